"""The CPU kernels of weightcast._C (csrc/cpu) against weightcast/ops/reference.py, bit for bit.

The CPU kernels convert float16/bfloat16 by bit manipulation (or F16C) and sum in the reference's order without
FMA, so they must equal the reference exactly, for every dtype pair, window and length (vector tails, tile edges).
They exist twice, generic and AVX2 (picked at run time); test_generic_kernels reruns this file with
WEIGHTCAST_CPU_ISA=generic so both are checked on an AVX2 machine. The schema, argument checks, threads and the
other edges of weightcast_C are in test_native.py.
"""
import os
import subprocess
import sys

import pytest
import torch

from weightcast import _build
from weightcast.ops import reference

pytestmark = pytest.mark.skipif(not _build.load_native(), reason=str(_build.build_info()["native_error"]))

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
SIZES = [0, 1, 7, 9, 255, 257, 1023, 4099, 278011]  # vector tails (4, 8 lanes), tiles of 256, thread chunks


class ops_one:
    """The multi-tensor C++ ops on a single tensor (segment [0, n) of every history row)."""

    @staticmethod
    def record(src, dst):
        return torch.ops.weightcast_C.record([src], dst.view(1, -1), 0, [0])

    @staticmethod
    def lincomb(out, history, coeffs):
        torch.ops.weightcast_C.lincomb_forecast([out], history, [0], coeffs)


def ops():
    return ops_one


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal values, NaN where the other has NaN (the NaN payload may differ from torch's)."""
    return a.dtype == b.dtype and torch.equal(torch.isnan(a), torch.isnan(b)) and \
        torch.equal(torch.nan_to_num(a, nan=0.0), torch.nan_to_num(b, nan=0.0))


def bits_to(dtype: torch.dtype, bits: torch.Tensor) -> torch.Tensor:
    """Tensor of `dtype` (float32, float16 or bfloat16) whose bit patterns are `bits` (non-negative int64)."""
    width = 32 if dtype == torch.float32 else 16
    signed = bits - (bits >= 2**(width - 1)).long() * 2**width
    return signed.to(torch.int32 if width == 32 else torch.int16).view(dtype)


def test_isa_is_reported():
    import weightcast._C as C

    assert C.cpu_isa in ("avx2", "generic")
    if os.environ.get("WEIGHTCAST_CPU_ISA") == "generic":
        assert C.cpu_isa == "generic"


@pytest.mark.parametrize("src_dtype", DTYPES)
@pytest.mark.parametrize("dst_dtype", DTYPES)
def test_record_equals_the_reference(src_dtype, dst_dtype):
    g = torch.Generator().manual_seed(1)
    for n in SIZES:
        x = torch.randn(n, generator=g) * 300
        x[::7] *= 1e-7  # float16 subnormals
        x[::11] = 70_000.0  # float16 overflow
        x = x.to(src_dtype)
        dst, ref = torch.full((n,), 3.0, dtype=dst_dtype), torch.empty(n, dtype=dst_dtype)
        absmax = ops().record(x, dst)
        assert same(dst, ref.copy_(x)), n
        assert same(absmax, reference.record([x], ref.view(1, -1), 0, [0])), n


@pytest.mark.parametrize("hist_dtype", DTYPES)
@pytest.mark.parametrize("out_dtype", DTYPES)
def test_lincomb_equals_the_reference(hist_dtype, out_dtype):
    g = torch.Generator().manual_seed(2)
    for n in SIZES:
        for w in (1, 2, 5, 7) + ((32,) if n < 10_000 else ()):
            history = torch.randn(w, n, generator=g).to(hist_dtype)
            coeffs = torch.randn(w, generator=g)
            buf = torch.full((n + 11,), -5.0, dtype=out_dtype)  # out is a row inside a buffer: edges stay
            out, ref = buf[3:3 + n], torch.empty(n, dtype=out_dtype)
            ops().lincomb(out, history, coeffs)
            reference.lincomb(ref, history, coeffs)
            assert torch.equal(out, ref), (n, w)
            assert bool((buf[:3] == -5).all() and (buf[3 + n:] == -5).all()), (n, w)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_every_16_bit_pattern_widens_exactly(dtype):
    x = bits_to(dtype, torch.arange(2**16))
    dst = torch.empty(2**16)
    absmax = ops().record(x, dst)
    assert same(dst, x.float()) and torch.isnan(absmax)
    out = torch.empty(2**16)
    ops().lincomb(out, x[None], torch.tensor([1.0]))
    assert same(out, x.float())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_float32_narrows_with_round_to_nearest_even(dtype):
    """Every float32 whose dropped bits sit at or next to a rounding boundary, for every kept bit pattern."""
    drop = 13 if dtype == torch.float16 else 16
    half_ulp = 1 << (drop - 1)
    kept = torch.arange(2**(32 - drop), dtype=torch.int64) << drop
    offsets = torch.tensor([0, 1, half_ulp - 1, half_ulp, half_ulp + 1, 2 * half_ulp - 1])
    x = bits_to(torch.float32, (kept[:, None] + offsets).flatten())
    dst = torch.empty(x.numel(), dtype=dtype)
    absmax = ops().record(x, dst)
    assert same(dst, x.to(dtype)) and torch.isnan(absmax)
    out = torch.empty(x.numel(), dtype=dtype)
    ops().lincomb(out, x[None], torch.tensor([1.0]))
    assert same(out, x.to(dtype))


@pytest.mark.parametrize("dst_dtype", DTYPES)
@pytest.mark.parametrize("n", [5, 4097, 278011])
def test_absmax_key_order(dst_dtype, n):
    """max |x| over the sign-cleared bits: -inf counts as inf, NaN beats inf wherever it sits (vector tail, last
    thread's chunk), and -0 is 0."""
    x = torch.zeros(n)
    dst = torch.empty(n, dtype=dst_dtype)
    x[0] = -0.0
    assert float(ops().record(x, dst)) == 0.0
    x[n // 2] = -3.5
    assert float(ops().record(x, dst)) == 3.5
    x[1] = float("-inf")
    assert float(ops().record(x, dst)) == float("inf")
    x[n - 1] = float("nan")
    assert torch.isnan(ops().record(x, dst))


def test_generic_kernels():
    """Rerun this file with the generic (non-AVX2) kernels forced."""
    import weightcast._C as C

    if C.cpu_isa == "generic":
        pytest.skip("the generic kernels are the ones in use here: the other tests checked them")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", os.path.abspath(__file__),
                           "-k", "not test_generic_kernels"], cwd=root, capture_output=True, text=True,
                          env={**os.environ, "WEIGHTCAST_CPU_ISA": "generic"}, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
