"""The compiled extension weightcast._C itself: its schemas, Meta kernels, build metadata, the edges of its
kernels (alignment, tails, threads), and the compile check of the CUDA sources on machines without a GPU.

The public ops on every backend are tested in test_ops_public.py; here the weightcast_C ops are called directly.
"""
import os
import shutil
import subprocess
import sys

import pytest
import torch

from weightcast import _extension
from weightcast.ops import reference

from conftest import DEVICES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DTYPES = [torch.float32, torch.float16, torch.bfloat16]

needs_ext = pytest.mark.skipif(not _extension.extension_loaded(), reason=_extension.extension_status())


def native_devices():
    return ["cpu"] + (["cuda"] if "cuda" in DEVICES and _extension.extension_has_cuda() else [])


def ops():
    return torch.ops.weightcast_C


class one:
    """The multi-tensor ops on a single tensor: its segment is [0, n) of every history row (the kernels' edges
    are the same for every tensor of a list; lists are tested below)."""

    @staticmethod
    def record(src, dst):
        return ops().record([src], dst.view(1, -1), 0, [0])

    @staticmethod
    def lincomb(out, history, coeffs):
        ops().lincomb_forecast([out], history, [0], coeffs)


def lincomb_bound(history, coeffs, out_dtype):
    """Largest error allowed against the float64 value of the difference form c_0 h_0 + sum_k c_k (h_k - h_0):
    float32 accumulation (2W roundings of at most eps32 * |c_0 h_0| + sum|c_k| (|h_k| + |h_0|) each) plus the
    final rounding to out_dtype (half an ulp, 1 ulp to be safe)."""
    h, c = history.double(), coeffs.double()
    terms = (c[0] * h[0]).abs() + (c[1:, None].abs() * (h[1:].abs() + h[:1].abs())).sum(0)
    exact = c[0] * h[0] + (c[1:, None] * (h[1:] - h[:1])).sum(0)
    w = history.shape[0]
    ulp_out = torch.finfo(out_dtype).eps * exact.abs() + torch.finfo(out_dtype).tiny
    return exact, 2 * w * torch.finfo(torch.float32).eps * terms + ulp_out


@needs_ext
def test_schemas():
    assert str(ops().record.default._schema) == \
        "weightcast_C::record(Tensor[] params, Tensor(a!) history, int slot, int[] offsets) -> Tensor"
    assert str(ops().lincomb_forecast.default._schema) == \
        "weightcast_C::lincomb_forecast(Tensor(a!)[] params, Tensor history, int[] offsets, Tensor coeffs) -> ()"


@needs_ext
def test_build_metadata_matches_the_running_torch():
    import weightcast._C as C

    # the C++ ABI follows torch's major.minor (weightcast/_build.py refuses a _C built against another one)
    assert C.torch_version.split(".")[:2] == torch.__version__.split(".")[:2], (
        f"weightcast._C was built against torch {C.torch_version} but torch {torch.__version__} is running: "
        "rebuild with `pip install --no-build-isolation -e .`")
    assert C.with_cuda in (0, 1)
    assert bool(C.with_cuda) == _extension.extension_has_cuda()
    if C.with_cuda:
        assert C.cuda_version == torch.version.cuda


@needs_ext
@pytest.mark.parametrize("device", native_devices())
@pytest.mark.parametrize("src_dtype", DTYPES)
@pytest.mark.parametrize("dst_dtype", DTYPES)
@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 4097, 278011])
def test_record_is_copy_and_absmax(device, src_dtype, dst_dtype, n):
    g = torch.Generator().manual_seed(n)
    src = (torch.randn(n, generator=g) * 50).to(src_dtype).to(device)
    dst = torch.full((n,), 7.0, dtype=dst_dtype, device=device)
    absmax = one.record(src, dst)
    expected = src.to(dst_dtype)
    assert torch.equal(dst, expected)
    assert absmax.dtype == torch.float32 and absmax.dim() == 0 and absmax.device == dst.device
    want = expected.float().abs().max() if n else torch.tensor(0.0)
    assert float(absmax) == float(want)


@needs_ext
@pytest.mark.parametrize("device", native_devices())
@pytest.mark.parametrize("dst_dtype", DTYPES)
def test_record_absmax_nan_beats_inf_and_overflow_is_inf(device, dst_dtype):
    src = torch.randn(10_000, device=device)
    dst = torch.empty(10_000, dtype=dst_dtype, device=device)
    src[9_999] = float("inf")
    assert float(one.record(src, dst)) == float("inf")
    src[17] = float("nan")
    assert torch.isnan(one.record(src, dst))
    src = torch.full((33,), 1e5, device=device)  # above the float16 max
    absmax = float(one.record(src, dst[:33]))
    assert absmax == (float("inf") if dst_dtype == torch.float16 else float(torch.tensor(1e5).to(dst_dtype)))


@needs_ext
@pytest.mark.parametrize("device", native_devices())
@pytest.mark.parametrize("offset", [0, 1, 3])
def test_record_misaligned_views(device, offset):
    """Pointers that are not 16-byte aligned take the scalar path; results must not change."""
    base_src = torch.randn(5000 + offset, device=device)
    base_dst = torch.zeros(5000 + offset, dtype=torch.float16, device=device)
    src, dst = base_src[offset:], base_dst[offset:]
    absmax = one.record(src, dst)
    assert torch.equal(dst, src.half())
    assert torch.count_nonzero(base_dst[:offset]) == 0
    assert float(absmax) == float(src.half().float().abs().max())


@needs_ext
@pytest.mark.parametrize("device", native_devices())
@pytest.mark.parametrize("hist_dtype", DTYPES)
@pytest.mark.parametrize("out_dtype", DTYPES)
@pytest.mark.parametrize("window,n", [(1, 1), (2, 9), (5, 278011), (32, 1031)])
def test_lincomb_error_is_bounded_by_float32_accumulation(device, hist_dtype, out_dtype, window, n):
    g = torch.Generator().manual_seed(window * 1000 + n)
    history = torch.randn(window, n, generator=g).to(hist_dtype).to(device)
    coeffs = torch.randn(window, generator=g).to(device)
    out = torch.full((n,), float("nan"), dtype=out_dtype, device=device)
    one.lincomb(out, history, coeffs)
    exact, bound = lincomb_bound(history, coeffs, out_dtype)
    err = (out.double() - exact).abs()
    assert bool((err <= bound).all()), f"max excess {float((err - bound).max())}"
    # and the reference obeys the same bound (the bound is not too tight to be meaningful)
    ref = torch.empty_like(out)
    reference.lincomb(ref, history, coeffs)
    assert bool(((ref.double() - exact).abs() <= bound).all())


@needs_ext
def test_lincomb_cpu_matches_the_reference():
    """The CPU kernel sums as the reference does (slot order, float32): equal up to one fused multiply-add."""
    history = torch.randn(5, 100_003)
    coeffs = torch.randn(5)
    out, ref = torch.empty(100_003), torch.empty(100_003)
    one.lincomb(out, history, coeffs)
    reference.lincomb(ref, history, coeffs)
    torch.testing.assert_close(out, ref, rtol=2e-7, atol=0)


@needs_ext
@pytest.mark.parametrize("device", native_devices())
@pytest.mark.parametrize("offset", [1, 2, 5])
def test_lincomb_misaligned_and_odd_rows(device, offset):
    """A row length that is not a multiple of the vector width, and an unaligned out, take the scalar path."""
    n = 4096 + offset
    history = torch.randn(4, n, device=device)
    coeffs = torch.tensor([0.5, -1.0, 0.25, 1.25], device=device)
    base = torch.zeros(n + offset, device=device)
    out = base[offset:]
    one.lincomb(out, history, coeffs)
    exact, bound = lincomb_bound(history, coeffs, torch.float32)
    assert bool(((out.double() - exact).abs() <= bound).all())
    assert torch.count_nonzero(base[:offset]) == 0


@needs_ext
@pytest.mark.parametrize("device", native_devices())
def test_lincomb_writes_non_finite_as_it_comes(device):
    """The kernel does not guard: weightcast::lincomb_forecast does."""
    history = torch.ones(3, 100, device=device)
    history[1, 10] = float("inf")
    history[2, 20] = float("nan")
    out = torch.zeros(100, device=device)
    one.lincomb(out, history, torch.ones(3, device=device))
    assert out[10] == float("inf") and torch.isnan(out[20]) and out[0] == 1  # h_0 + 0 + 0


@needs_ext
def test_cpu_results_do_not_depend_on_the_thread_count():
    history = torch.randn(5, 300_001, dtype=torch.bfloat16)
    coeffs = torch.randn(5)
    src = torch.randn(300_001)
    results = []
    old = torch.get_num_threads()
    try:
        for threads in (1, max(2, old)):
            torch.set_num_threads(threads)
            out, dst = torch.empty(300_001, dtype=torch.float16), torch.empty(300_001, dtype=torch.bfloat16)
            one.lincomb(out, history, coeffs)
            results.append((out, dst, one.record(src, dst)))
    finally:
        torch.set_num_threads(old)
    (o1, d1, a1), (o2, d2, a2) = results
    assert torch.equal(o1, o2) and torch.equal(d1, d2) and torch.equal(a1, a2)


@needs_ext
@pytest.mark.parametrize("call,message", [
    (lambda: ops().record([torch.zeros(4, dtype=torch.float64)], torch.zeros(1, 4), 0, [0]),
     "float32, float16 or bfloat16"),
    (lambda: ops().record([torch.zeros(4)], torch.zeros(1, 5), 0, [2]), "outside a history row"),
    (lambda: ops().record([torch.zeros(4)], torch.zeros(2, 4), 2, [0]), "outside the history window"),
    (lambda: ops().record([torch.zeros(4)], torch.zeros(4), 0, [0]), "2-D"),
    (lambda: ops().record([torch.zeros(8)[::2]], torch.zeros(1, 4), 0, [0]), "contiguous"),
    (lambda: ops().record([torch.zeros(4), torch.zeros(2)], torch.zeros(1, 8), 0, [0]), "one offset per parameter"),
    (lambda: ops().lincomb_forecast([torch.zeros(4)], torch.zeros(33, 4), [0], torch.zeros(33)), "[1, 32]"),
    (lambda: ops().lincomb_forecast([torch.zeros(4)], torch.zeros(3, 4), [0], torch.zeros(2)), "one per history row"),
    (lambda: ops().lincomb_forecast([torch.zeros(4)], torch.zeros(3, 4), [0], torch.zeros(3, dtype=torch.float64)),
     "float32"),
    (lambda: ops().lincomb_forecast([torch.zeros(5)], torch.zeros(3, 4), [0], torch.zeros(3)), "outside a history row"),
])
def test_bad_arguments_are_refused_with_a_message(call, message):
    with pytest.raises(RuntimeError, match=message.replace("[", r"\[").replace("]", r"\]")):
        call()


@needs_ext
def test_overlapping_buffers_are_refused():
    buf = torch.zeros(3, 8)
    with pytest.raises(RuntimeError, match="overlap"):
        ops().lincomb_forecast([buf[2]], buf, [0], torch.ones(3))
    with pytest.raises(RuntimeError, match="overlap"):
        ops().record([buf[0, :6]], buf, 1, [0])


@needs_ext
def test_meta_kernels_shape_without_data():
    src = torch.empty(10, device="meta")
    dst = torch.empty(10, dtype=torch.float16, device="meta")
    absmax = one.record(src, dst)
    assert absmax.device.type == "meta" and absmax.shape == () and absmax.dtype == torch.float32
    one.lincomb(torch.empty(10, device="meta"), torch.empty(3, 10, device="meta"), torch.empty(3, device="meta"))
    with pytest.raises(RuntimeError, match="outside a history row"):
        one.lincomb(torch.empty(11, device="meta"), torch.empty(3, 10, device="meta"), torch.empty(3, device="meta"))


@needs_ext
@pytest.mark.parametrize("device", native_devices())
def test_opcheck(device):
    """Schema, autograd registration and fake-tensor checks. Dynamic shapes are not tested: the weightcast_C ops
    are only called from inside the opaque public ops (weightcast/ops), which torch.compile does not trace into,
    and their Meta checks read concrete sizes."""
    utils = ("test_schema", "test_autograd_registration", "test_faketensor")
    history = torch.randn(5, 1001, device=device)
    params = [torch.empty(1001, device=device), torch.empty(3, 7, device=device)]
    torch.library.opcheck(ops().lincomb_forecast.default, (params, history, [0, 1024 - 64],
                                                           torch.randn(5, device=device)), test_utils=utils)
    torch.library.opcheck(ops().record.default, ([torch.randn(1001, device=device), torch.randn(3, 7, device=device)],
                                                 torch.empty(2, 1100, dtype=torch.bfloat16, device=device), 1,
                                                 [0, 1024]), test_utils=utils)


@pytest.mark.slow  # ~75 s; .ci/run runs tools/check_cuda.sh itself as a separate step
def test_cuda_sources_compile_without_a_gpu():
    """tools/check_cuda.sh: nvcc -c of csrc/cuda/*.cu for sm_80 and sm_90, and a syntax check of the torch glue."""
    if shutil.which("nvcc") is None and not os.path.exists("/usr/local/cuda/bin/nvcc"):
        pytest.skip("nvcc is not installed")
    proc = subprocess.run(["bash", os.path.join(ROOT, "tools", "check_cuda.sh")], capture_output=True, text=True,
                          env={**os.environ, "PYTHON": sys.executable}, timeout=600)
    if proc.returncode == 77:
        pytest.skip(proc.stdout.strip())
    assert proc.returncode == 0, proc.stdout + proc.stderr
