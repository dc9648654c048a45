"""The nowcast jump-cost benchmark runs end to end on the smallest study model and writes the one results schema."""
import sys
from pathlib import Path

import pytest

from weightcast.ops import available_backends
from weightcast.results import read_results

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import bench_nowcast_jump  # noqa: E402


@pytest.mark.skipif("cpp" not in available_backends("cpu", "nowcast_forecast"), reason="weightcast._C not built")
def test_benchmark_writes_times_shares_and_the_estimate(tmp_path):
    out = tmp_path / "nowcast_jump.csv"
    assert bench_nowcast_jump.main(["--models", "digits-mlp", "--repeats", "2", "--record-every", "10", "200",
                                    "--out", str(out)]) == 0
    rows = read_results(out)
    by = {(r["name"], r["metric"], r["x_value"]): r for r in rows}
    for label in ("train_step", "record", "jump_cpp", "jump_reference", "guard_forecast_cpp"):
        row = by[(f"digits-mlp:{label}", "time", "4810")]
        assert row["unit"] == "ms" and float(row["q20"]) <= float(row["value"]) <= float(row["q80"])
    short, long = (float(by[("digits-mlp:jump_cpp", "amortised_share", r)]["value"]) for r in ("10", "200"))
    assert 0 < long < short < 1  # the same jump over a 20x longer period
    assert float(by[("nowcaster", "flops_per_element", "")]["value"]) > 0
    assert "H100 estimate (not a measurement" in out.with_suffix(".md").read_text()


def test_benchmark_refuses_bad_arguments(capsys, monkeypatch):
    monkeypatch.setattr(bench_nowcast_jump.torch.cuda, "is_available", lambda: False)
    for argv in (["--record-every", "0"], ["--repeats", "1"], ["--models", "resnet"], ["--device", "cuda"]):
        with pytest.raises(SystemExit) as exit_info:
            bench_nowcast_jump.main(argv)
        assert exit_info.value.code == 2
