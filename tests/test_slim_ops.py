"""weightcast::generate_write on every available backend against the pure-PyTorch reference (float64 oracle), for
odd sizes, with and without bias, accumulating (residual) and overwriting (full)."""
import pytest
import torch

from weightcast.ops import dispatch
from weightcast.slim import ops

SIZES = [(1, 1, 1), (7, 9, 5), (300, 25, 32), (65, 1, 17), (33, 16, 128)]  # (K, T, H)


def backends():
    found = [f"cpu:{b}" for b in ops.available_backends("cpu")]
    if torch.cuda.is_available():
        found += [f"cuda:{b}" for b in ops.available_backends("cuda")]
    return found


def _inputs(K, T, H, device, seed):
    g = torch.Generator().manual_seed(seed)
    rand = lambda *s: torch.randn(*s, generator=g).to(device)  # noqa: E731
    return rand(K, T), rand(K, H), rand(T, H), rand(T)


@pytest.mark.parametrize("backend", backends())
@pytest.mark.parametrize("K, T, H", SIZES)
@pytest.mark.parametrize("accumulate", [True, False])
@pytest.mark.parametrize("with_bias", [True, False])
def test_generate_write_matches_the_reference(backend, K, T, H, accumulate, with_bias):
    device, name = backend.split(":")
    out, hidden, weight, bias = _inputs(K, T, H, device, seed=K * T + H)
    bias = bias if with_bias else None
    expected = out.double()
    ops.generate_write_reference(expected, hidden.double(), weight.double(),
                                 None if bias is None else bias.double(), 0.37, accumulate)
    with dispatch.use_backend(name):
        ops.generate_write(out, hidden, weight, bias, 0.37, accumulate)
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5 * H ** 0.5)


def test_generate_write_leaves_other_memory_alone():
    big = torch.zeros(10, 6)
    out = big[2:7]  # a contiguous block of rows of a larger weight
    _, hidden, weight, bias = _inputs(5, 6, 4, "cpu", seed=1)
    ops.generate_write(out, hidden, weight, bias, 1.0, False)
    assert torch.all(big[:2] == 0) and torch.all(big[7:] == 0) and torch.all(out != 0)


def test_generate_write_opcheck():
    out, hidden, weight, bias = _inputs(9, 5, 7, "cpu", seed=2)
    torch.library.opcheck(ops.generate_write, (out, hidden, weight, bias, 0.5, True))


def test_generate_write_refuses_bad_input():
    out, hidden, weight, bias = _inputs(9, 5, 7, "cpu", seed=3)
    with pytest.raises(ValueError, match=r"weight must be a contiguous \(5, 7\)"):
        ops.generate_write(out, hidden, weight.t().contiguous(), bias, 1.0, True)
    with pytest.raises(ValueError, match="hidden"):
        ops.generate_write(out, hidden[:4], weight, bias, 1.0, True)
    with pytest.raises(ValueError, match="bias"):
        ops.generate_write(out, hidden, weight, bias.double(), 1.0, True)
    with pytest.raises(ValueError, match="out must be a contiguous"):
        ops.generate_write(out.t(), hidden, weight, bias, 1.0, True)
    with dispatch.use_backend("cuda"), pytest.raises(dispatch.BackendUnavailableError, match="no CUDA C"):
        ops.generate_write(out, hidden, weight, bias, 1.0, True)


def test_float64_runs_the_reference_and_forced_kernels_refuse_it():
    out, hidden, weight, bias = (t.double() for t in _inputs(4, 3, 2, "cpu", seed=4))
    expected = out.clone()
    ops.generate_write_reference(expected, hidden, weight, bias, 2.0, True)
    ops.generate_write(out, hidden, weight, bias, 2.0, True)
    assert torch.equal(out, expected)
    if "cpp" in ops.available_backends("cpu"):
        with dispatch.use_backend("cpp"), pytest.raises(dispatch.BackendUnavailableError, match="float32 only"):
            ops.generate_write(out, hidden, weight, bias, 2.0, True)


def test_the_cpp_kernel_is_built():
    from weightcast import _extension

    if not _extension.extension_loaded():
        pytest.skip(f"weightcast._C not loaded: {_extension.extension_status()}")
    assert "cpp" in ops.available_backends("cpu")
