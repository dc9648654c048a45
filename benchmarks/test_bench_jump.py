"""pytest-benchmark micro-benchmarks of the jump ops: ``pytest benchmarks --benchmark-only``.

Sizes stay small enough for a CPU run; bench_jump.py covers 1M-25M parameters and writes the committed CSV.
"""
import pytest
import torch

import weightcast as wc
from weightcast.forecasters import least_squares_line_coefficients

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
BACKENDS = [b for b in wc.ops.available_backends(DEVICE) if not (DEVICE == "cpu" and b == "triton")]
N, WINDOW = 1_000_000, 5


def _sync():
    if DEVICE == "cuda":
        torch.cuda.synchronize()


@pytest.fixture
def buffers():
    flat = torch.randn(N, device=DEVICE)
    history = torch.randn(WINDOW, N, device=DEVICE)
    coeffs = least_squares_line_coefficients(list(range(1, WINDOW + 1)), 2 * WINDOW)
    return flat, history, coeffs, history.abs().amax(dim=1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_record(benchmark, buffers, backend):
    flat, history, _, _ = buffers
    with wc.ops.use_backend(backend):
        benchmark(lambda: (wc.ops.record([flat], history, 0, [0]), _sync()))
    assert torch.equal(history[0], flat)


@pytest.mark.parametrize("backend", BACKENDS)
def test_lincomb_forecast(benchmark, buffers, backend):
    flat, history, coeffs, absmax = buffers
    with wc.ops.use_backend(backend):
        benchmark(lambda: (wc.ops.lincomb_forecast([flat], history, [0], coeffs, absmax), _sync()))
    expected = (coeffs.to(history.device)[:, None] * history.double()).sum(0)
    torch.testing.assert_close(flat.double(), expected, rtol=1e-5, atol=1e-5)


def test_sgd_momentum_step(benchmark):
    p = torch.nn.Parameter(torch.randn(N, device=DEVICE))
    p.grad = torch.randn_like(p)
    opt = torch.optim.SGD([p], lr=1e-3, momentum=0.9, foreach=True)
    benchmark(lambda: (opt.step(), _sync()))
