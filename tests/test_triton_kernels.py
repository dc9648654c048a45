"""Tests of the Triton kernels record and lincomb (weightcast.kernels) against a float64 oracle and the reference.

On a machine without CUDA the kernels run on CPU tensors in Triton's interpreter: TRITON_INTERPRET=1 is set here,
before triton is imported (fp32/fp16 only; bf16 is tested on CUDA). With CUDA the kernels run on the GPU and the
CPU parametrisation is skipped (the interpreter must be chosen before the kernels are decorated).

The kernels are imported from the installed package ``weightcast.kernels``; when weightcast is not installed
(``pip install --no-build-isolation -e .``), from the source folder ``kernels/`` of this checkout, and
``test_installed_package`` is skipped saying so.
"""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # must precede the first import of triton

import importlib
import importlib.util
import pathlib
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("triton", reason="triton is not installed")

REPO = pathlib.Path(__file__).resolve().parents[1]


def _import_kernels():
    """(record module, lincomb module, where they came from)."""
    try:
        return (importlib.import_module("weightcast.kernels.record"),
                importlib.import_module("weightcast.kernels.lincomb"), "installed")
    except ImportError as exc:
        err = f"{type(exc).__name__}: {exc}"
    name = "_weightcast_kernels_src"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "kernels" / "__init__.py",
                                                      submodule_search_locations=[str(REPO / "kernels")])
        package = importlib.util.module_from_spec(spec)
        sys.modules[name] = package
        spec.loader.exec_module(package)
    return (importlib.import_module(f"{name}.record"), importlib.import_module(f"{name}.lincomb"),
            f"source folder kernels/ (weightcast.kernels not importable: {err})")


record_mod, lincomb_mod, KERNELS_FROM = _import_kernels()
record, lincomb = record_mod.record, lincomb_mod.lincomb


def _import_reference():
    """weightcast.ops.reference (installed, else from this checkout); None if absent: the oracle still runs."""
    for attempt in range(2):
        try:
            return importlib.import_module("weightcast.ops.reference")
        except ImportError:
            if attempt == 0 and str(REPO) not in sys.path:
                sys.path.insert(0, str(REPO))
    return None


reference = _import_reference()

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
# Only what this machine can run is parametrised; test_coverage_on_this_machine skips saying what was left out.
DEVICES = (["cpu"] if INTERPRET else []) + (["cuda"] if torch.cuda.is_available() else [])
F32, F16, BF16 = torch.float32, torch.float16, torch.bfloat16
DTYPES = [F32, F16] + ([] if INTERPRET else [BF16])  # bf16 stays out of the interpreter
SIZES = [0, 1, 7, 1023, 4097]
LARGE = 278011  # odd size that exposes tail bugs (apex); fp32 only, the interpreter is slow


def _randn(n, dtype, device, seed, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, generator=g, dtype=torch.float64) * scale).to(dtype).to(device)


# ---------------------------------------------------------------------------------------------------------- record


def _oracle_record(src, dst_dtype):
    """dst as torch's copy_ writes it, and its absmax computed in float64 (NaN-propagating)."""
    dst = src.cpu().to(dst_dtype)
    d64 = dst.double()
    absmax = d64.abs().max() if d64.numel() else torch.zeros((), dtype=torch.float64)
    if d64.isnan().any():
        absmax = torch.tensor(float("nan"), dtype=torch.float64)
    return dst, absmax.float()


def _check_record(src, dst_dtype):
    dst = torch.full(src.shape, 7.0, dtype=dst_dtype, device=src.device)
    got = record(src, dst)
    want_dst, want_max = _oracle_record(src, dst_dtype)
    assert got.shape == () and got.dtype == F32 and got.device == src.device
    torch.testing.assert_close(dst.cpu(), want_dst, rtol=0, atol=0, equal_nan=True)  # bit for bit, as copy_
    torch.testing.assert_close(got.cpu(), want_max, rtol=0, atol=0, equal_nan=True)
    if reference is not None:
        ref_dst = torch.empty_like(dst)
        ref_max = reference.record(src, ref_dst)
        torch.testing.assert_close(dst, ref_dst, rtol=0, atol=0, equal_nan=True)
        torch.testing.assert_close(got, ref_max, rtol=0, atol=0, equal_nan=True)
    return got


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("src_dtype", DTYPES)
@pytest.mark.parametrize("dst_dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_record_matches_oracle(device, src_dtype, dst_dtype, n):
    _check_record(_randn(n, src_dtype, device, seed=n, scale=3.0), dst_dtype)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dst_dtype", [F32, F16])
def test_record_large_odd_size(device, dst_dtype):
    _check_record(_randn(LARGE, F32, device, seed=1), dst_dtype)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy in the interpreter warns on fp16 overflow
def test_record_rounds_to_nearest_even(device):
    eps = 2.0 ** -11  # half an fp16 ulp at 1.0: exact ties go to the even neighbour
    values = [1 + eps, 1 + 3 * eps, -(1 + eps), 2049.0, 2051.0, 65519.0, 65520.0, 6e-8, 1e-8, 2.0 ** -25]
    _check_record(torch.tensor(values, dtype=F32, device=device), F16)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dst_dtype", [F32, F16])
@pytest.mark.parametrize("case", ["inf", "-inf", "nan", "nan_and_inf", "-nan", "zeros", "negzero", "overflow"])
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy in the interpreter warns on fp16 overflow
def test_record_absmax_nonfinite(device, dst_dtype, case):
    n = 5000  # two programs: the special value lands in the second one
    src = _randn(n, F32, device, seed=3)
    where = 4500
    if case == "inf":
        src[where] = float("inf")
    elif case == "-inf":
        src[where] = float("-inf")
    elif case == "nan":
        src[where] = float("nan")
    elif case == "nan_and_inf":
        src[10], src[where] = float("-inf"), float("nan")
    elif case == "-nan":
        src[where] = -float("nan")
    elif case == "zeros":
        src.zero_()
    elif case == "negzero":
        src.fill_(-0.0)
    elif case == "overflow":
        src[where] = 7e4  # finite in fp32, inf once stored in fp16
    got = _check_record(src, dst_dtype).item()
    if case in ("inf", "-inf") or (case == "overflow" and dst_dtype == F16):
        assert got == float("inf")
    elif case in ("nan", "nan_and_inf", "-nan"):
        assert got != got
    elif case in ("zeros", "negzero"):
        assert got == 0.0 and not np.signbit(got)


@pytest.mark.parametrize("device", DEVICES)
def test_record_into_views(device):
    """src and dst may be 1-D contiguous views at any element offset (unaligned base pointers)."""
    buf = _randn(3000, F32, device, seed=5)
    out = torch.zeros(4000, dtype=F16, device=device)
    got = record(buf[1:2990], out[3:2992])
    assert torch.equal(out[3:2992].cpu(), buf[1:2990].cpu().half())
    assert out[:3].eq(0).all() and out[2992:].eq(0).all()
    assert got.item() == buf[1:2990].half().float().abs().max().item()


# --------------------------------------------------------------------------------------------------------- lincomb


def _coeffs(w, device, seed):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(w, generator=g, dtype=torch.float64) * 2).float().to(device)


def _check_lincomb(out, history, coeffs):
    lincomb(out, history, coeffs)
    h64, c64 = history.cpu().double(), coeffs.cpu().double()
    moves = h64[1:] - h64[:1]  # difference form: coeffs[0] weights h_0, coeffs[k] weights h_k - h_0
    want = c64[0] * h64[0] + (c64[1:, None] * moves).sum(0)
    scale = (c64[0] * h64[0]).abs() + (c64[1:, None].abs() * (h64[1:].abs() + h64[:1].abs())).sum(0)
    got = out.cpu().double()
    err = (got - want).abs()
    if out.dtype == F32:
        tol = 1e-6 * scale + 1e-30
    else:  # 16-bit output: at most one ulp of the output dtype, or 2x the error of torch computing in that dtype
        ulp = torch.from_numpy(np.spacing(np.abs(want.numpy()).astype(np.float16)).astype(np.float64)) \
            if out.dtype == F16 else _bf16_ulp(want)
        h0 = history[0].cpu().to(out.dtype)
        plain = coeffs[0].cpu().to(out.dtype) * h0
        for k in range(1, history.shape[0]):
            plain = plain + coeffs[k].cpu().to(out.dtype) * (history[k].cpu().to(out.dtype) - h0)
        tol = torch.maximum(ulp, 2 * (plain.double() - want).abs())
    bad = err > tol
    assert not bad.any(), (f"{int(bad.sum())} of {bad.numel()} elements off; worst at {int((err - tol).argmax())}: "
                           f"got {got[(err - tol).argmax()]}, want {want[(err - tol).argmax()]}")
    if reference is not None:
        ref_out = torch.empty_like(out)
        reference.lincomb(ref_out, history, coeffs)
        assert ((ref_out.cpu().double() - got).abs() <= 2 * tol).all()


def _bf16_ulp(x):
    a = x.abs().float().clamp_min(2.0 ** -126)
    return torch.pow(2.0, torch.floor(torch.log2(a)) - 7).double()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("hist_dtype", DTYPES)
@pytest.mark.parametrize("out_dtype", DTYPES)
@pytest.mark.parametrize("w", [1, 2, 5, 7])
@pytest.mark.parametrize("n", SIZES)
def test_lincomb_matches_oracle(device, hist_dtype, out_dtype, w, n):
    history = _randn(w * n, hist_dtype, device, seed=100 + n + w).view(w, n)
    out = torch.full((n,), 7.0, dtype=out_dtype, device=device)
    _check_lincomb(out, history, _coeffs(w, device, seed=w))


@pytest.mark.parametrize("device", DEVICES)
def test_lincomb_large_odd_size(device):
    history = _randn(5 * LARGE, F32, device, seed=2).view(5, LARGE)
    _check_lincomb(torch.empty(LARGE, device=device), history, _coeffs(5, device, seed=9))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("w", [3, 32])
def test_lincomb_linear_extrapolation(device, w):
    """The linear forecaster's use: least-squares line through w points evaluated ahead; exact on a line."""
    t = torch.arange(w, dtype=torch.float64)
    ahead = w - 1 + 10.0
    tc = t - t.mean()
    c = (1 / w + (ahead - t.mean()) * tc / (tc * tc).sum())
    c[0] = c.sum()  # difference form
    c = c.float().to(device)
    slope, icpt = _randn(4099, F32, device, seed=4).double(), _randn(4099, F32, device, seed=5).double()
    history = (icpt[None] + slope[None] * t.to(device)[:, None]).float()
    out = torch.empty(4099, device=device)
    _check_lincomb(out, history, c)
    torch.testing.assert_close(out.double(), icpt + slope * ahead, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_lincomb_out_is_a_row_of_another_buffer(device):
    n = 1025
    history = _randn(3 * n, F32, device, seed=6).view(3, n)
    buf = torch.zeros(3, n + 1, dtype=F16, device=device)
    _check_lincomb(buf[1, 1:], history, _coeffs(3, device, seed=1))  # unaligned row view
    assert buf[0].eq(0).all() and buf[2].eq(0).all() and buf[1, 0] == 0


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy in the interpreter warns on inf - inf and overflow
def test_lincomb_writes_nonfinite_as_they_come(device):
    history = torch.tensor([[1.0, float("inf"), 0.0, float("nan"), 6e4],
                            [1.0, 1.0, float("inf"), 1.0, 6e4]], device=device)
    out = torch.zeros(5, dtype=F16, device=device)
    lincomb(out, history, torch.tensor([1.0, 0.5], device=device))  # h_0 + 0.5 (h_1 - h_0)
    got = out.float().cpu().tolist()
    assert got[0] == 1.0 and got[1] != got[1] and got[2] == float("inf") and got[3] != got[3]  # inf - inf = nan
    assert got[4] == 6e4 - 6e4 % 32  # 6e4 rounded to fp16
    lincomb(out, history, torch.tensor([2.0, 0.0], device=device))
    assert out[4].item() == float("inf")  # 1.2e5 overflows fp16


# ----------------------------------------------------------------------------------------------- input validation


@pytest.mark.parametrize("device", DEVICES)
def test_record_rejects_bad_input(device):
    x = torch.zeros(8, device=device)
    cases = [
        ((torch.zeros(8, dtype=torch.float64, device=device), x), TypeError, "float32, float16 or bfloat16"),
        ((x, torch.zeros(8, dtype=torch.int32, device=device)), TypeError, "dst must be float32"),
        ((torch.zeros(2, 4, device=device), x), ValueError, "src must be 1-D"),
        ((x, torch.zeros(7, device=device)), ValueError, "same length"),
        ((torch.zeros(16, device=device)[::2], x), ValueError, "src must be contiguous"),
        ((x, torch.zeros(8, device="meta")), ValueError, "one device"),
        (([0.0] * 8, x), TypeError, "torch.Tensor"),
    ]
    for args, exc, msg in cases:
        with pytest.raises(exc, match=msg):
            record(*args)


@pytest.mark.parametrize("device", DEVICES)
def test_lincomb_rejects_bad_input(device):
    n = 8
    h = torch.zeros(3, n, device=device)
    c = torch.zeros(3, device=device)
    o = torch.zeros(n, device=device)
    cases = [
        ((o, torch.zeros(0, n, device=device), torch.zeros(0, device=device)), ValueError, r"in \[1, 32\], got 0"),
        ((o, torch.zeros(33, n, device=device), torch.zeros(33, device=device)), ValueError, r"in \[1, 32\], got 33"),
        ((o, h, torch.zeros(3, dtype=torch.float64, device=device)), TypeError, "coeffs must be a 1-D float32"),
        ((o, h, torch.zeros(4, device=device)), ValueError, "coeffs must have W = 3"),
        ((o, h, torch.zeros(6, device=device)[::2]), ValueError, "coeffs must be contiguous"),
        ((torch.zeros(n + 1, device=device), h), ValueError, "out must have N = 8"),
        ((o, torch.zeros(n, device=device)), ValueError, "history must be 2-D"),
        ((o, torch.zeros(n, 3, device=device).t()), ValueError, "history must be contiguous"),
        ((o, h.to(torch.float64)), TypeError, "history must be float32"),
        ((o.to(torch.int64), h), TypeError, "out must be float32"),
        ((o, h, torch.zeros(3, device="meta")), ValueError, "one device"),
        ((h[1], h), ValueError, "must not overlap"),
    ]
    for args, exc, msg in cases:
        args = args if len(args) == 3 else (*args, c)
        with pytest.raises(exc, match=msg):
            lincomb(*args)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device next to the CPU")
def test_mixed_devices_rejected():
    with pytest.raises(ValueError, match="one device"):
        record(torch.zeros(4), torch.zeros(4, device="cuda"))
    with pytest.raises(ValueError, match="one device"):
        lincomb(torch.zeros(4, device="cuda"), torch.zeros(2, 4, device="cuda"), torch.zeros(2))


_IMPORT_IN_SUBPROCESS = f"""
import importlib, importlib.util, sys
try:
    record_mod = importlib.import_module("weightcast.kernels.record")
    lincomb_mod = importlib.import_module("weightcast.kernels.lincomb")
except ImportError:
    spec = importlib.util.spec_from_file_location("k", {str(REPO / 'kernels' / '__init__.py')!r},
                                                  submodule_search_locations=[{str(REPO / 'kernels')!r}])
    sys.modules["k"] = importlib.util.module_from_spec(spec); spec.loader.exec_module(sys.modules["k"])
    record_mod, lincomb_mod = importlib.import_module("k.record"), importlib.import_module("k.lincomb")
"""


def _run_without_interpreter(code):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    res = subprocess.run([sys.executable, "-c", _IMPORT_IN_SUBPROCESS + code], env=env, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout


def test_cpu_without_interpreter_says_what_to_do():
    """Without TRITON_INTERPRET=1 a CPU tensor gets an error naming the fix, not a Triton traceback."""
    out = _run_without_interpreter("""
import torch
try:
    record_mod.record(torch.zeros(4), torch.zeros(4))
except RuntimeError as exc:
    print(exc)
""")
    assert "TRITON_INTERPRET=1" in out


def test_kernels_compile_for_gpu():
    """Ahead-of-time compile to sm_80/sm_90 cubins: catches GPU-only compile errors on a machine without a GPU.

    Covers all dtypes, 32- and 64-bit N, and N specialised to the constexpr 1 (as Triton does when N == 1).
    """
    try:
        import triton.backends.nvidia  # noqa: F401
    except ImportError:
        pytest.skip("this triton has no NVIDIA backend")
    out = _run_without_interpreter("""
import triton
from triton.compiler import ASTSource
from triton.backends.compiler import GPUTarget
opts = {"num_warps": 8, "enable_fp_fusion": True}
n = 0
for arch in (80, 90):
    for a, b, nty in [("fp32", "bf16", "i32"), ("bf16", "fp16", "i64"), ("fp16", "fp32", "constexpr")]:
        c = {"N": 1} if nty == "constexpr" else {}
        sig = {"src_ptr": "*" + a, "dst_ptr": "*" + b, "partial_ptr": "*i32", "N": nty, "BLOCK": "constexpr"}
        k = triton.compile(ASTSource(record_mod._record_kernel, sig, constexprs={"BLOCK": 4096, **c}),
                           target=GPUTarget("cuda", arch, 32), options=opts)
        n += bool(k.asm["cubin"])
        sig = {"out_ptr": "*" + b, "history_ptr": "*" + a, "coeffs_ptr": "*fp32", "N": nty, "W": "constexpr",
               "BLOCK": "constexpr"}
        k = triton.compile(ASTSource(lincomb_mod._lincomb_kernel, sig, constexprs={"BLOCK": 8192, "W": 7, **c}),
                           target=GPUTarget("cuda", arch, 32), options=opts)
        n += bool(k.asm["cubin"])
print("compiled", n)
""")
    assert "compiled 12" in out


def test_installed_package():
    if KERNELS_FROM != "installed":
        pytest.skip(f"kernels tested from the {KERNELS_FROM}; install with `pip install --no-build-isolation -e .`")
    import weightcast.kernels

    assert "record" in weightcast.kernels.__all__ and "lincomb" in weightcast.kernels.__all__


def test_coverage_on_this_machine():
    missing = []
    if not torch.cuda.is_available():
        missing.append("cuda (no CUDA device)")
    if not INTERPRET:
        missing.append("cpu (TRITON_INTERPRET is not 1: with CUDA present the kernels are compiled for the GPU)")
    if INTERPRET:
        missing.append("bfloat16 (kept out of the interpreter; tested on CUDA)")
    if reference is None:
        missing.append("comparison with weightcast.ops.reference (not importable)")
    if missing:
        pytest.skip("not tested here: " + "; ".join(missing))
