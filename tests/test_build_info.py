"""weightcast/_build.py: the build facts written by setup.py, and the refusal of a _C built against another torch."""
import pytest
import torch

from weightcast import _build

KEYS = {"version", "local_version", "backends", "cuda_version", "cuda_arch_list", "torch_built_against",
        "py_limited_api", "torch_version", "native_loaded", "native_error", "torch_mismatch"}


def test_build_info_reports_the_build_and_the_run():
    info = _build.build_info()
    if not _build.read_build_info():
        pytest.skip("weightcast was not built here (no weightcast/_build_info.json): "
                    "pip install --no-build-isolation -e .")
    assert KEYS <= set(info)
    assert info["torch_version"] == torch.__version__
    assert info["version"].startswith("0.1.0")
    if info["local_version"]:
        assert info["version"].endswith("+" + info["local_version"])
    assert set(info["backends"]) <= {"cpp", "cuda"}
    assert ("cuda" in info["backends"]) == (info["cuda_version"] is not None)
    if info["native_loaded"]:
        import weightcast._C as C

        assert info["native_error"] is None and info["torch_mismatch"] is None
        assert C.torch_version == info["torch_built_against"]
        assert bool(C.with_cuda) == ("cuda" in info["backends"])
    else:
        assert "pip install" in info["native_error"]


@pytest.mark.parametrize("built,now,mismatch", [
    ("2.13.0+cpu", "2.13.0+cpu", False),
    ("2.13.0+cpu", "2.13.1+cu130", False),
    ("2.12.1", "2.13.0+cpu", True),
    ("3.0.0", "2.13.0", True),
    (None, "2.13.0", False),
])
def test_torch_mismatch_compares_major_minor(built, now, mismatch):
    message = _build.torch_mismatch(built, now)
    assert (message is not None) == mismatch
    if mismatch:
        assert built in message and now in message and _build.REBUILD in message


def test_a_native_build_for_another_torch_is_refused_with_a_warning(monkeypatch):
    monkeypatch.setattr(_build, "_native", {})
    monkeypatch.setattr(_build, "read_build_info", lambda: {"torch_built_against": "1.13.0"})
    monkeypatch.setattr(_build.importlib.util, "find_spec", lambda name: object())
    with pytest.warns(RuntimeWarning, match="compiled against torch 1.13.0"):
        assert _build.load_native() is False
    info = _build.build_info()
    assert info["native_loaded"] is False and info["torch_mismatch"] == info["native_error"]
    assert _build.load_native() is False  # decided once


def test_a_missing_native_build_is_silent(monkeypatch, recwarn):
    monkeypatch.setattr(_build, "_native", {})
    monkeypatch.setattr(_build.importlib.util, "find_spec", lambda name: None)
    assert _build.load_native() is False
    assert "not built" in _build.build_info()["native_error"]
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
