"""The wheel tooling: tools/check_wheel.py on synthetic wheels (fast; the GPU-code check on a small library that
nvcc compiles here), the message of a CUDA build without a GPU, and tools/build_wheel.sh and
tools/build_cuda_wheel.sh end to end (slow: they compile weightcast._C, and the CUDA one downloads a CUDA torch of
several GB once; run with -m slow)."""
import glob
import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest
import torch

from weightcast import _extension

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))

import check_wheel  # noqa: E402


def make_wheel(path, files, version="0.1.0+cpu", tag="cp310-abi3-linux_x86_64", backends=("cpp",), **info_extra):
    dist = f"weightcast-{version}.dist-info"
    info = {"version": version, "backends": list(backends), "cuda_version": None, **info_extra}
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
    assert check_wheel.check(wheel, expect_native=True, expect_cuda=False, source=None) == 0


def test_a_good_pure_python_wheel_passes(tmp_path):
    wheel = make_wheel(tmp_path / "pure.whl", PACKAGE, version="0.1.0", tag="py3-none-any", backends=())
    assert check_wheel.check(wheel, expect_native=False, expect_cuda=False, source=None) == 0


@pytest.mark.parametrize("extra,why", [
    ({"kernels/__init__.py": ""}, "top-level kernels package (PyPI has one)"),
    ({"tests/test_x.py": ""}, "tests shipped"),
    ({"weightcast/__pycache__/x.cpython-311.pyc": ""}, "build debris"),
])
def test_bad_layouts_fail(tmp_path, extra, why, monkeypatch):
    monkeypatch.delenv("WEIGHTCAST_LOCAL_VERSION", raising=False)
    wheel = make_wheel(tmp_path / "bad.whl", {**PACKAGE, **extra, "weightcast/_C.abi3.so": native_so()})
    assert check_wheel.check(wheel, expect_native=True, expect_cuda=False, source=None) == 1, why


def test_missing_extension_and_wrong_tags_fail(tmp_path, monkeypatch):
    monkeypatch.delenv("WEIGHTCAST_LOCAL_VERSION", raising=False)
    no_ext = make_wheel(tmp_path / "noext.whl", PACKAGE)
    assert check_wheel.check(no_ext, expect_native=True, expect_cuda=False, source=None) == 1
    one_python = make_wheel(tmp_path / "cp311.whl", {**PACKAGE, "weightcast/_C.abi3.so": native_so()},
                            tag="cp311-cp311-linux_x86_64")
    assert check_wheel.check(one_python, expect_native=True, expect_cuda=False, source=None) == 1
    wrong_label = make_wheel(tmp_path / "label.whl", {**PACKAGE, "weightcast/_C.abi3.so": native_so()},
                             version="0.1.0+cu130")
    assert check_wheel.check(wrong_label, expect_native=True, expect_cuda=False, source=None) == 1


def test_missing_weights_or_triton_kernels_fail(tmp_path, monkeypatch):
    monkeypatch.delenv("WEIGHTCAST_LOCAL_VERSION", raising=False)
    source = tmp_path / "src"
    for name in ("weightcast/forecasters/weights/f.safetensors", "weightcast/forecasters/weights/f.json",
                 "kernels/__init__.py", "kernels/lincomb.py"):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_text("")
    assert check_wheel.shipped_data(str(source)) == [
        "weightcast/forecasters/weights/f.json", "weightcast/forecasters/weights/f.safetensors",
        "weightcast/kernels/__init__.py", "weightcast/kernels/lincomb.py"]
    files = {**PACKAGE, "weightcast/_C.abi3.so": native_so(), "weightcast/forecasters/weights/f.json": "",
             "weightcast/forecasters/weights/f.safetensors": "", "weightcast/kernels/lincomb.py": ""}
    assert check_wheel.check(make_wheel(tmp_path / "all.whl", files), True, False, str(source)) == 0
    del files["weightcast/forecasters/weights/f.safetensors"]
    assert check_wheel.check(make_wheel(tmp_path / "noweights.whl", files), True, False, str(source)) == 1


@pytest.mark.parametrize("arch_list,sass,ptx", [
    ("8.0;9.0", {"sm_80", "sm_90"}, set()),
    ("8.0;9.0+PTX", {"sm_80", "sm_90"}, {"compute_90"}),
    ("7.5 8.6+PTX", {"sm_75", "sm_86"}, {"compute_86"}),
    ("9.0a", {"sm_90a"}, set()),
])
def test_expected_gpu_code_follows_torch_cuda_arch_list(arch_list, sass, ptx):
    assert check_wheel.expected_gpu_code(arch_list) == (sass, ptx)


@pytest.fixture(scope="module")
def cuda_library(tmp_path_factory):
    """A small shared library with a cubin for sm_80 and sm_90 and PTX for compute_90, linking the CUDA runtime."""
    nvcc = shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc"
    if not os.access(nvcc, os.X_OK) or check_wheel.find_cuobjdump() is None:
        pytest.skip("needs nvcc and cuobjdump (a CUDA toolkit, or Triton's copy)")
    folder = tmp_path_factory.mktemp("cuda")
    (folder / "k.cu").write_text("__global__ void scale(float* x, float a) { x[threadIdx.x] *= a; }\n")
    subprocess.run([nvcc, "-shared", "-Xcompiler", "-fPIC", "-cudart", "shared", "-o", str(folder / "k.so"),
                    "-gencode", "arch=compute_80,code=sm_80", "-gencode", "arch=compute_90,code=[sm_90,compute_90]",
                    str(folder / "k.cu")], check=True, capture_output=True, timeout=300)
    return (folder / "k.so").read_bytes()


def test_gpu_code_lists_the_cubins_and_ptx(cuda_library):
    sass, ptx, listing = check_wheel.gpu_code(cuda_library, check_wheel.find_cuobjdump())
    assert (sass, ptx) == ({"sm_80", "sm_90"}, {"compute_90"})
    assert any(line.startswith("ELF file") for line in listing) and any(line.startswith("PTX") for line in listing)


@pytest.mark.parametrize("arch_list,passes", [("8.0;9.0+PTX", True), ("8.0;9.0", True), ("8.0+PTX;9.0", False),
                                              ("8.0;9.0;10.0", False)])
def test_a_cuda_wheel_needs_the_gpu_code_of_its_arch_list(tmp_path, monkeypatch, cuda_library, arch_list, passes):
    monkeypatch.delenv("WEIGHTCAST_LOCAL_VERSION", raising=False)
    wheel = make_wheel(tmp_path / "cu.whl", {**PACKAGE, "weightcast/_C.abi3.so": cuda_library},
                       version="0.1.0+cu130", backends=("cpp", "cuda"), cuda_version="13.0", cuda_arch_list=arch_list)
    assert check_wheel.check(wheel, expect_native=True, expect_cuda=True, source=None) == (0 if passes else 1)


def test_cuda_kernels_without_a_gpu_give_one_clear_warning(monkeypatch):
    monkeypatch.setitem(_extension._state, "has_cuda", True)
    monkeypatch.setitem(_extension._state, "no_gpu", None)
    monkeypatch.setattr(_extension, "read_build_info",
                        lambda: {"cuda_version": "13.0", "cuda_arch_list": "8.0;9.0+PTX"})
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    _extension._note_idle_cuda_kernels()
    assert _extension.cuda_kernels_idle() is None
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    with pytest.warns(RuntimeWarning) as record:
        _extension._note_idle_cuda_kernels()
    assert len(record) == 1
    message = str(record[0].message)
    assert "CUDA 13.0" in message and "8.0;9.0+PTX" in message and "no CUDA GPU is visible" in message
    assert "C++ (CPU) kernel" in message and message == _extension.cuda_kernels_idle()
    if _extension.extension_loaded():
        assert message in _extension.extension_status()


@pytest.mark.slow
def test_build_wheel_end_to_end(tmp_path):
    """Builds the real wheel (compiles _C), checks it, installs it into a fresh venv and smoke-tests it."""
    proc = subprocess.run(["bash", os.path.join(ROOT, "tools", "build_wheel.sh"), str(tmp_path)],
                          capture_output=True, text=True, timeout=1800, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "smoke test passed" in proc.stdout
    assert len(glob.glob(str(tmp_path / "weightcast-*-cp310-abi3-*.whl"))) == 1


@pytest.mark.slow
def test_build_cuda_wheel_end_to_end(tmp_path):
    """Builds the +cuXYZ wheel with tools/build_cuda_wheel.sh (a CUDA torch in a cache outside the clone, nvcc
    here, no GPU needed), checks it and smoke-tests it installed. The first run downloads several GB."""
    if shutil.which("nvcc") is None and not os.environ.get("CUDA_HOME") and not os.path.exists("/usr/local/cuda"):
        pytest.skip("needs nvcc (a CUDA toolkit)")
    proc = subprocess.run(["bash", os.path.join(ROOT, "tools", "build_cuda_wheel.sh"), str(tmp_path)],
                          capture_output=True, text=True, timeout=7200, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "smoke test passed" in proc.stdout
    wheels = glob.glob(str(tmp_path / "weightcast-*.whl"))
    assert len(wheels) == 1 and "+cu" in wheels[0] and "-cp310-abi3-" in wheels[0], wheels
