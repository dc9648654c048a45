"""Tests of the Triton kernels record and lincomb_forecast (weightcast.kernels) against a float64 oracle and the
reference.

On a machine without CUDA the kernels run on CPU tensors in Triton's interpreter: TRITON_INTERPRET=1 is set by
conftest.py before triton is imported (fp32/fp16 only; bf16 is tested on CUDA). With CUDA the kernels run on the
GPU and the CPU parametrisation is skipped (the interpreter must be chosen before the kernels are decorated).
Most cases call the multi-tensor kernels on one tensor (its segment is [0, n) of every history row); lists of
tensors are tested at the end.
"""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

triton = pytest.importorskip("triton", reason="triton is not installed")

from weightcast.kernels import lincomb_forecast as lincomb_mod  # noqa: E402
from weightcast.kernels import record as record_mod  # noqa: E402
from weightcast.ops import reference  # noqa: E402


def record(src, dst):
    """The kernel on one tensor: ``dst`` (n,) is a one-row history."""
    return record_mod.record([src], dst.view(1, -1), 0, [0])


def lincomb(out, history, coeffs):
    lincomb_mod.lincomb_forecast([out], history, [0], coeffs)


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
    ref_dst = torch.empty_like(dst)
    ref_max = reference.record([src], ref_dst.view(1, -1), 0, [0])
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
    h = torch.zeros(1, 8, device=device)
    cases = [
        (([torch.zeros(8, dtype=torch.float64, device=device)], h, 0, [0]), TypeError, "float32, float16 or bfloat16"),
        (([x], torch.zeros(1, 8, dtype=torch.int32, device=device), 0, [0]), TypeError, "history must be float32"),
        (([x], torch.zeros(8, device=device), 0, [0]), ValueError, "history must be 2-D"),
        (([x], torch.zeros(1, 7, device=device), 0, [0]), ValueError, "does not fit its segment"),
        (([torch.zeros(16, device=device)[::2]], h, 0, [0]), ValueError, "contiguous"),
        (([x], torch.zeros(1, 8, device="meta"), 0, [0]), ValueError, "one device"),
    ]
    for args, exc, msg in cases:
        with pytest.raises(exc, match=msg):
            record_mod.record(*args)


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
        ((torch.zeros(n + 1, device=device), h), ValueError, "does not fit its segment"),
        ((o, torch.zeros(n, device=device)), ValueError, "history must be 2-D"),
        ((o, torch.zeros(n, 3, device=device).t()), ValueError, "history must be contiguous"),
        ((o, h.to(torch.float64)), TypeError, "history must be float32"),
        ((o.to(torch.int64), h), TypeError, "must be float32"),
        ((o, h, torch.zeros(3, device="meta")), ValueError, "one device"),
        ((h[1], h), ValueError, "must not overlap"),
    ]
    for args, exc, msg in cases:
        args = args if len(args) == 3 else (*args, c)
        with pytest.raises(exc, match=msg):
            lincomb(*args)


@pytest.mark.parametrize("device", DEVICES)
def test_lists_of_tensors_fill_their_segments(device):
    """Several tensors of odd shapes (one non-contiguous view made contiguous by the caller) in one call: each
    lands in its own segment, the gaps stay zero, the absmax covers all of them, and the forecast writes each."""
    shapes = [(3, 5), (17,), (2, 3, 4), (1,)]
    params = [_randn(int(np.prod(s)), F32, device, seed=i, scale=2.0).view(s) for i, s in enumerate(shapes)]
    offsets = [0, 64, 128, 192]
    history = torch.zeros(3, 256, device=device)
    for slot in range(3):
        got = record_mod.record([p * (slot + 1) for p in params], history, slot, offsets)
        want = max(float((p * (slot + 1)).abs().max()) for p in params)
        assert float(got) == want
    for p, o in zip(params, offsets):
        assert torch.equal(history[0, o:o + p.numel()], p.reshape(-1))
        assert not bool(history[:, o + p.numel():o + 64].any())
    outs = [torch.empty_like(p) for p in params]
    coeffs = torch.tensor([0.5, -1.0, 2.0], device=device)
    lincomb_mod.lincomb_forecast(outs, history, offsets, coeffs)
    refs = [torch.empty_like(p) for p in params]
    reference.lincomb_forecast(refs, history, offsets, coeffs)
    for out, ref in zip(outs, refs):
        torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device next to the CPU")
def test_mixed_devices_rejected():
    with pytest.raises(ValueError, match="one device"):
        record(torch.zeros(4), torch.zeros(4, device="cuda"))
    with pytest.raises(ValueError, match="one device"):
        lincomb(torch.zeros(4, device="cuda"), torch.zeros(2, 4, device="cuda"), torch.zeros(2))


_IMPORT_IN_SUBPROCESS = """
from weightcast.kernels import lincomb_forecast as lincomb_mod, record as record_mod
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
    record_mod.record([torch.zeros(4)], torch.zeros(1, 4), 0, [0])
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
        sig = {"out_ptr": "*" + b, "history_ptr": "*" + a, "coeffs_ptr": "*fp32", "N": nty, "ROW": "i64",
               "W": "constexpr", "BLOCK": "constexpr"}
        k = triton.compile(ASTSource(lincomb_mod._lincomb_kernel, sig, constexprs={"BLOCK": 8192, "W": 7, **c}),
                           target=GPUTarget("cuda", arch, 32), options=opts)
        n += bool(k.asm["cubin"])
print("compiled", n)
""")
    assert "compiled 12" in out


def test_coverage_on_this_machine():
    missing = []
    if not torch.cuda.is_available():
        missing.append("cuda (no CUDA device)")
    if not INTERPRET:
        missing.append("cpu (TRITON_INTERPRET is not 1: with CUDA present the kernels are compiled for the GPU)")
    if INTERPRET:
        missing.append("bfloat16 (kept out of the interpreter; tested on CUDA)")
    if missing:
        pytest.skip("not tested here: " + "; ".join(missing))
