"""The benchmark scripts write the one results schema (weightcast.results) and refuse bad sizes up front."""
import sys
from pathlib import Path

import pytest

from weightcast import _extension
from weightcast.results import read_results

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import bench_native_ops  # noqa: E402


@pytest.mark.skipif(not _extension.extension_loaded(), reason="weightcast._C is not built")
def test_native_ops_benchmark_writes_the_one_schema(tmp_path):
    out = tmp_path / "native.csv"
    assert bench_native_ops.main(["--device", "cpu", "--sizes", "1000", "--out", str(out)]) == 0
    rows = read_results(out)
    assert {r["name"] for r in rows} >= {"record fp32->fp32", "lincomb bf16->bf16"}
    time = next(r for r in rows if r["metric"] == "ms_median")
    assert time["unit"] == "ms" and time["x_value"] == "1000" and float(time["q20"]) <= float(time["value"])


def test_benchmarks_refuse_bad_sizes_before_running(capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench_native_ops.main(["--sizes", "0"])
    assert exit_info.value.code == 2 and "--sizes: 0 is out of range" in capsys.readouterr().err


def test_jump_later_reference_counts_the_same_steps_without_jumps(tmp_path):
    """A jump method's jumps worse 100 steps later, and a method without jumps on its curve at the same (seed,
    step) pairs: a jump without a later value is left out on both sides, a pair lacking the later point too."""
    import jump_later_reference
    from weightcast.results import write_results

    base = {"benchmark": "time_to_accuracy", "unit": "metric", "x_name": "step",
            "config": {"task": "digits-mlp", "phase": "measure"}}
    jumper, plain = "jump-slow-ema-adamw:nowcast", "adamw"
    rows = []
    for seed, step, before, later in ((0, 100, 0.9, 0.8), (0, 200, 0.9, 0.95), (0, 300, 0.9, float("nan")),
                                      (1, 100, 0.9, 0.95)):
        rows += [{**base, "name": jumper, "seed": seed, "metric": "jump_before", "x_value": step, "value": before},
                 {**base, "name": jumper, "seed": seed, "metric": "jump_after_100", "x_value": step, "value": later}]
    for seed, step, value in ((0, 100, 0.9), (0, 200, 0.8), (0, 300, 0.85), (0, 400, 0.1), (1, 100, 0.5)):
        rows.append({**base, "name": plain, "seed": seed, "metric": "val_metric", "x_value": step, "value": value})
    rows.append({**base, "name": jumper, "seed": 0, "metric": "val_metric", "x_value": 100, "value": 0.9})
    rows.append({**base, "name": plain, "seed": 0, "metric": "val_metric", "x_value": 50, "value": 0.1,
                 "config": {"task": "digits-mlp", "phase": "tune"}})   # tuning runs are not read
    path = tmp_path / "tta_digits-mlp.csv"
    write_results(path, rows, device="cpu")
    out = tmp_path / "reference.md"
    assert jump_later_reference.main([str(path), "--out", str(out)]) == 0
    text = out.read_text()
    # jumps: (0,100) worse, (0,200) not, (1,100) not, (0,300) has no later value; adamw at (0,100) and (0,200):
    # 0.9 -> 0.8 worse, 0.8 -> 0.85 not; (0,300) left out with its jump (0.85 -> 0.1 would count), (1,200) absent
    assert f"| {jumper} | 1/3 | 1/2 |" in text and f"{jumper}, no jump" not in text
