"""The benchmark scripts write the one results schema (weightcast.results) and refuse bad sizes up front."""
import subprocess
import sys
from pathlib import Path

import pytest

from weightcast import _extension
from weightcast.results import read_results

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def run_script(name, *args):
    return subprocess.run([sys.executable, str(BENCHMARKS / name), *args], capture_output=True, text=True,
                          cwd=BENCHMARKS.parent, env={"OMP_NUM_THREADS": "1", "PATH": ""}, timeout=300)


@pytest.mark.skipif(not _extension.extension_loaded(), reason="weightcast._C is not built")
def test_native_ops_benchmark_writes_the_one_schema(tmp_path):
    out = tmp_path / "native.csv"
    done = run_script("bench_native_ops.py", "--device", "cpu", "--sizes", "1000", "--out", str(out))
    assert done.returncode == 0, done.stderr
    rows = read_results(out)
    assert {r["name"] for r in rows} >= {"record fp32->fp32", "lincomb bf16->bf16"}
    time = next(r for r in rows if r["metric"] == "ms_median")
    assert time["unit"] == "ms" and time["x_value"] == "1000" and float(time["q20"]) <= float(time["value"])


def test_benchmarks_refuse_bad_sizes_before_running():
    done = run_script("bench_native_ops.py", "--sizes", "0")
    assert done.returncode == 2 and "--sizes: 0 is out of range" in done.stderr
