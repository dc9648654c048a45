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
