"""The wheel tooling: tools/check_wheel.py on synthetic wheels (fast), and tools/build_wheel.sh end to end
(slow: it compiles weightcast._C; run with -m slow)."""
import glob
import json
import os
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))

import check_wheel  # noqa: E402


def make_wheel(path, files, version="0.1.0+cpu", tag="cp310-abi3-linux_x86_64", backends=("cpp",)):
    dist = f"weightcast-{version}.dist-info"
    info = {"version": version, "backends": list(backends), "cuda_version": None}
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        zf.writestr("weightcast/_build_info.json", json.dumps(info))
        zf.writestr(f"{dist}/WHEEL", f"Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: {tag}\n")
        zf.writestr(f"{dist}/METADATA", f"Metadata-Version: 2.1\nName: weightcast\nVersion: {version}\n")
        zf.writestr(f"{dist}/RECORD", "")
    return str(path)


PACKAGE = {"weightcast/__init__.py": "", "weightcast/kernels/__init__.py": ""}


def native_so():
    found = glob.glob(os.path.join(ROOT, "weightcast", "_C*.so"))
    return open(found[0], "rb").read() if found else b"not an ELF file"


def test_a_good_native_wheel_passes(tmp_path, monkeypatch):
    monkeypatch.delenv("WEIGHTCAST_LOCAL_VERSION", raising=False)
    wheel = make_wheel(tmp_path / "good.whl", {**PACKAGE, "weightcast/_C.abi3.so": native_so()})
    assert check_wheel.check(wheel, expect_native=True, expect_cuda=False) == 0


def test_a_good_pure_python_wheel_passes(tmp_path):
    wheel = make_wheel(tmp_path / "pure.whl", PACKAGE, version="0.1.0", tag="py3-none-any", backends=())
    assert check_wheel.check(wheel, expect_native=False, expect_cuda=False) == 0


@pytest.mark.parametrize("extra,why", [
    ({"kernels/__init__.py": ""}, "top-level kernels package (PyPI has one)"),
    ({"tests/test_x.py": ""}, "tests shipped"),
    ({"weightcast/__pycache__/x.cpython-311.pyc": ""}, "build debris"),
])
def test_bad_layouts_fail(tmp_path, extra, why, monkeypatch):
    monkeypatch.delenv("WEIGHTCAST_LOCAL_VERSION", raising=False)
    wheel = make_wheel(tmp_path / "bad.whl", {**PACKAGE, **extra, "weightcast/_C.abi3.so": native_so()})
    assert check_wheel.check(wheel, expect_native=True, expect_cuda=False) == 1, why


def test_missing_extension_and_wrong_tags_fail(tmp_path, monkeypatch):
    monkeypatch.delenv("WEIGHTCAST_LOCAL_VERSION", raising=False)
    no_ext = make_wheel(tmp_path / "noext.whl", PACKAGE)
    assert check_wheel.check(no_ext, expect_native=True, expect_cuda=False) == 1
    one_python = make_wheel(tmp_path / "cp311.whl", {**PACKAGE, "weightcast/_C.abi3.so": native_so()},
                            tag="cp311-cp311-linux_x86_64")
    assert check_wheel.check(one_python, expect_native=True, expect_cuda=False) == 1
    wrong_label = make_wheel(tmp_path / "label.whl", {**PACKAGE, "weightcast/_C.abi3.so": native_so()},
                             version="0.1.0+cu130")
    assert check_wheel.check(wrong_label, expect_native=True, expect_cuda=False) == 1


@pytest.mark.slow
def test_build_wheel_end_to_end(tmp_path):
    """Builds the real wheel (compiles _C), checks it, installs it into a fresh venv and smoke-tests it."""
    proc = subprocess.run(["bash", os.path.join(ROOT, "tools", "build_wheel.sh"), str(tmp_path)],
                          capture_output=True, text=True, timeout=1800, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "smoke test passed" in proc.stdout
    assert len(glob.glob(str(tmp_path / "weightcast-*-cp310-abi3-*.whl"))) == 1
