"""The nowcast CPU kernel's tile MLP (csrc/cpu/nowcast_tile.h) for every x86-64 level its function multi-versioning
may pick (x86-64, v3 with AVX2 and FMA, v4 with AVX-512): each built alone with the extension's flags and checked
against a double-precision evaluation (tests/native/nowcast_tile_check.cpp), so that the variants this machine does
not pick at load time are tested too; v3 and v4 (both with FMA) give the same bits."""
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CHECK = Path(__file__).resolve().parent / "native" / "nowcast_tile_check.cpp"
LEVELS = {"x86-64": set(), "x86-64-v3": {"avx2", "fma", "bmi2"},
          "x86-64-v4": {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}}

pytestmark = pytest.mark.skipif(sys.platform != "linux" or platform.machine() != "x86_64" or not shutil.which("g++"),
                                reason="the multi-versioned tile is built for x86-64 Linux with GCC")


def cpu_flags() -> set[str]:
    text = Path("/proc/cpuinfo").read_text()
    return set(re.search(r"^flags\s*:(.*)$", text, re.M).group(1).split())


def run_level(level: str, tmp_path: Path) -> tuple[float, float, str]:
    exe = tmp_path / f"tile_{level}"
    subprocess.run(["g++", "-std=c++17", "-O3", "-ffp-contract=off", f"-march={level}", "-DWEIGHTCAST_SINGLE_TARGET",
                    "-o", str(exe), str(CHECK)], check=True, capture_output=True)
    done = subprocess.run([str(exe)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    error, largest, digest = re.fullmatch(r"error (\S+) max (\S+) hash (\w+)\n", done.stdout).groups()
    return float(error), float(largest), digest


def test_every_level_this_cpu_runs_matches_the_double_evaluation(tmp_path):
    flags = cpu_flags()
    results = {level: run_level(level, tmp_path) for level, needs in LEVELS.items() if needs <= flags}
    for level, (error, largest, _) in results.items():
        assert largest > 1 and error <= 1e-5 * largest, level   # float32 rounding only
    if {"x86-64-v3", "x86-64-v4"} <= set(results):
        assert results["x86-64-v3"][2] == results["x86-64-v4"][2]
