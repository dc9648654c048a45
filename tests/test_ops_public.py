"""The public ops weightcast::record and weightcast::lincomb_forecast on every available backend."""
import pytest
import torch

from weightcast import ops

from conftest import DEVICES

CASES = [(d, b) for d in DEVICES for b in ops.available_backends(d)]
INTERPRETED = {"triton"} if not torch.cuda.is_available() else set()


def record_one(params, history, slot):
    """The multi-tensor op on one tensor: its segment is [0, n) of every history row."""
    return ops.record([params], history, slot, [0])


def lincomb_one(params, history, coeffs, slot_absmax):
    return ops.lincomb_forecast([params], history, [0], coeffs, slot_absmax)


def dtypes_for(backend):
    """bf16 is kept out of the Triton interpreter."""
    return [torch.float32, torch.float16] + ([] if backend in INTERPRETED else [torch.bfloat16])


DTYPES = [torch.float32, torch.float16, torch.bfloat16]
DTYPE_IDS = ["float32", "float16", "bfloat16"]


def skip_unsupported(backend, dtype):
    if dtype not in dtypes_for(backend):
        pytest.skip(f"{dtype} is kept out of the Triton interpreter")


@pytest.mark.parametrize("device,backend", CASES)
@pytest.mark.parametrize("n", [1, 7, 1023, 4099])
@pytest.mark.parametrize("storage", DTYPES, ids=DTYPE_IDS)
def test_record_copies_and_reports_absmax(device, backend, n, storage):
    skip_unsupported(backend, storage)
    params = torch.randn(n, device=device) * 3
    history = torch.zeros(3, n, dtype=storage, device=device)
    with ops.use_backend(backend):
        absmax = record_one(params, history, 1)
    assert torch.equal(history[1], params.to(storage))
    assert torch.count_nonzero(history[0]) == 0 and torch.count_nonzero(history[2]) == 0
    assert absmax.dtype == torch.float32 and absmax.dim() == 0
    assert float(absmax) == float(params.to(storage).float().abs().max())


@pytest.mark.parametrize("device,backend", CASES)
def test_record_absmax_sees_nan_and_inf(device, backend):
    params = torch.randn(513, device=device)
    history = torch.zeros(2, 513, device=device)
    params[100] = float("inf")
    with ops.use_backend(backend):
        assert float(record_one(params, history, 0)) == float("inf")
        params[400] = float("nan")
        assert torch.isnan(record_one(params, history, 1))


@pytest.mark.parametrize("device,backend", CASES)
@pytest.mark.parametrize("window,n", [(2, 1), (5, 278011), (7, 1025)])
def test_lincomb_forecast_matches_float64(device, backend, window, n):
    if backend in INTERPRETED and n > 100_000:
        pytest.skip("large sizes are too slow in the Triton interpreter")
    history = torch.randn(window, n, device=device)
    coeffs = torch.randn(window, device=device)
    params = torch.empty(n, device=device)
    absmax = history.abs().amax(dim=1)
    with ops.use_backend(backend):
        written = lincomb_one(params, history, coeffs, absmax)
    assert bool(written)
    expected = (coeffs.double()[:, None] * history.double()).sum(0)
    torch.testing.assert_close(params.double(), expected, rtol=1e-6, atol=1e-6 * float(coeffs.abs().sum()))


@pytest.mark.parametrize("device,backend", CASES)
@pytest.mark.parametrize("dtype", DTYPES[1:], ids=DTYPE_IDS[1:])
def test_lincomb_forecast_half_precision_error_is_bounded(device, backend, dtype):
    """Rule: the kernel's error is at most twice that of plain PyTorch computing in the same dtype (+1 ulp)."""
    skip_unsupported(backend, dtype)
    history = torch.randn(5, 4097, device=device).to(dtype)
    coeffs = torch.tensor([-0.6, -0.1, 0.2, 0.5, 1.0], device=device)
    expected = (coeffs.double()[:, None] * history.double()).sum(0)
    plain = (coeffs.to(dtype)[:, None] * history).sum(0)
    params = torch.empty(4097, dtype=dtype, device=device)
    with ops.use_backend(backend):
        lincomb_one(params, history, coeffs, None)
    kernel_err = (params.double() - expected).abs().max()
    plain_err = (plain.double() - expected).abs().max()
    ulp = torch.finfo(dtype).eps * float(expected.abs().max())
    assert kernel_err <= 2 * plain_err + ulp


@pytest.mark.parametrize("device,backend", CASES)
def test_lincomb_forecast_never_writes_non_finite(device, backend):
    params = torch.randn(300, device=device)
    before = params.clone()
    history = torch.randn(3, 300, device=device)
    history[1, 17] = float("nan")
    absmax = history.abs().amax(dim=1)
    with ops.use_backend(backend):
        assert not bool(lincomb_one(params, history, torch.ones(3, device=device), absmax))
    assert torch.equal(params, before)


@pytest.mark.parametrize("device,backend", CASES)
def test_lincomb_forecast_overflow_in_half_is_refused(device, backend):
    """Finite history whose combination overflows float16: the bound test fails, the scratch check refuses."""
    params = torch.ones(64, dtype=torch.float16, device=device)
    history = torch.full((2, 64), 60000.0, dtype=torch.float16, device=device)
    history[0, 5] = -60000.0
    coeffs = torch.tensor([-1.0, 2.0], device=device)
    absmax = history.float().abs().amax(dim=1)
    assert not ops.forecast_is_provably_finite(params.dtype, coeffs, absmax)
    with ops.use_backend(backend):
        assert not bool(lincomb_one(params, history, coeffs, absmax))
    assert torch.equal(params, torch.ones_like(params))


def test_bound_check_accepts_ordinary_forecasts():
    f32 = torch.float32
    assert ops.forecast_is_provably_finite(f32, torch.tensor([-1.0, 2.0]), torch.tensor([3.0, 4.0]))
    assert not ops.forecast_is_provably_finite(f32, torch.tensor([-1.0, 2.0]), torch.tensor([3.0, float("nan")]))
    assert not ops.forecast_is_provably_finite(f32, torch.tensor([-1.0, 2.0]), None)


def test_bad_input_is_refused_with_a_message():
    history = torch.zeros(3, 10)
    with pytest.raises(ValueError, match="slot 3"):
        record_one(torch.zeros(10), history, 3)
    with pytest.raises(ValueError, match="outside a history row"):
        record_one(torch.zeros(11), history, 0)
    with pytest.raises(ValueError, match="one offset per parameter"):
        ops.record([torch.zeros(3), torch.zeros(3)], history, 0, [0])
    with pytest.raises(ValueError, match="contiguous"):
        record_one(torch.zeros(10), torch.zeros(3, 20)[:, ::2], 0)
    with pytest.raises(ValueError, match="coeffs"):
        lincomb_one(torch.zeros(10), history, torch.zeros(2), None)
    with pytest.raises(ValueError, match="coeffs"):
        lincomb_one(torch.zeros(10), history, torch.zeros(3, dtype=torch.int64), None)
    with pytest.raises(ValueError, match="1..32"):
        lincomb_one(torch.zeros(10), torch.zeros(33, 10), torch.zeros(33), None)


def test_forced_unavailable_backend_says_why(monkeypatch):
    monkeypatch.setenv("WEIGHTCAST_BACKEND", "cuda")
    with pytest.raises(ops.BackendUnavailableError, match="CUDA tensors only"):
        record_one(torch.zeros(4), torch.zeros(2, 4), 0)
    monkeypatch.setenv("WEIGHTCAST_BACKEND", "nonsense")
    with pytest.raises(ValueError, match="not a backend"):
        record_one(torch.zeros(4), torch.zeros(2, 4), 0)


def test_float64_goes_to_the_reference():
    history = torch.randn(3, 9, dtype=torch.float64)
    params = torch.empty(9, dtype=torch.float64)
    assert bool(lincomb_one(params, history, torch.tensor([0.2, 0.3, 0.5]), None))
    expected = (torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)[:, None] * history).sum(0)
    torch.testing.assert_close(params, expected, rtol=1e-6, atol=1e-7)


def test_difference_form_keeps_a_constant_trajectory_exact():
    """Weights summing to 1 (any extrapolation) forecast a parameter that never moved to itself, bit for bit."""
    value = torch.randn(1000) * 100
    history = value.repeat(5, 1)
    coeffs = wc_line(5, 40)
    for backend in ops.available_backends("cpu"):
        params = torch.empty(1000)
        with ops.use_backend(backend):
            assert bool(lincomb_one(params, history, coeffs, history.abs().amax(1)))
        assert torch.equal(params, value), backend


def wc_line(window, target):
    from weightcast.forecasters import least_squares_line_coefficients

    return least_squares_line_coefficients(list(range(1, window + 1)), target)


@pytest.mark.parametrize("device,backend", CASES)
def test_opcheck(device, backend):
    history = torch.randn(4, 37, device=device)
    with ops.use_backend(backend):
        torch.library.opcheck(torch.ops.weightcast.record.default,
                              ([torch.randn(17, device=device), torch.randn(2, 5, device=device)], history, 2, [0, 20]))
        torch.library.opcheck(torch.ops.weightcast.lincomb_forecast.default,
                              ([torch.randn(17, device=device), torch.randn(2, 5, device=device)], history, [0, 20],
                               torch.randn(4, device=device), history.abs().amax(1)))


@pytest.mark.parametrize("device,backend", CASES)
def test_lists_of_tensors_of_any_layout(device, backend):
    """Several parameters in one call, non-contiguous ones (channels_last, a transpose) included: each is read and
    written in its logical (row-major) order through its segment, and keeps its strides."""
    g = torch.Generator().manual_seed(0)
    params = [torch.randn(13, 7, generator=g), torch.randn(5, generator=g),
              torch.randn(2, 3, 4, 5, generator=g).to(memory_format=torch.channels_last),
              torch.randn(9, 4, generator=g).t()]
    params = [p.to(device) if p.is_contiguous() else p.to(device).contiguous().as_strided(p.shape, p.stride())
              for p in params]
    params[2] = params[2].contiguous().to(memory_format=torch.channels_last)
    params[3] = params[3].t().contiguous().t()
    strides = [p.stride() for p in params]
    offsets = [0, 128, 192, 384]
    history = torch.zeros(3, 448, device=device)
    with ops.use_backend(backend):
        for slot in range(3):
            ops.record([p * (slot + 1) for p in params], history, slot, offsets)
        for p, o in zip(params, offsets):
            assert torch.equal(history[1, o:o + p.numel()], (2 * p).reshape(-1))
        coeffs = torch.tensor([-1.0, 0.5, 1.5], dtype=torch.float64)
        assert bool(ops.lincomb_forecast(params, history, offsets, coeffs, history.abs().amax(1)))
    for p, o, stride in zip(params, offsets, strides):
        expected = (coeffs.to(device)[:, None] * history[:, o:o + p.numel()].double()).sum(0)
        torch.testing.assert_close(p.reshape(-1).double(), expected, rtol=1e-6, atol=1e-6)
        assert p.stride() == stride
