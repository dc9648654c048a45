"""obs_trace: every backend against the float64 reference, and the reference against brute force."""
import itertools

import pytest
import torch

from weightcast.ops.dispatch import BackendUnavailableError, use_backend
from weightcast.prune.obs import compensate
from weightcast.prune.obs_kernel import obs_trace, obs_trace_ref, why_unavailable

BACKENDS = [b for b in ("cpp", "triton") if why_unavailable(b, torch.device("cpu")) is None]


def problem(rows, d, seed, n=None):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n or 2 * d + 3, d, generator=g, dtype=torch.float64)
    H = 2 * X.T @ X / len(X)
    H += 0.01 * H.diagonal().mean() * torch.eye(d, dtype=torch.float64)
    W = torch.randn(rows, d, generator=g, dtype=torch.float64)
    return W, H, torch.cholesky_inverse(torch.linalg.cholesky(H))


def test_reference_equals_brute_force_optimal_single_removals():
    """Each greedy step removes the weight whose removal (with the optimal compensation of the rest) raises the
    quadratic error (w - w0)^T H (w - w0) the least; its loss is that rise, its weights the optimum."""
    W, H, Hinv = problem(3, 6, seed=1)
    order, losses, W_out = obs_trace_ref(W, Hinv, 6)

    def best_error(w0, removed):
        keep = torch.ones(len(w0), dtype=torch.bool)
        keep[list(removed)] = False
        w = compensate(w0[None], H, keep[None])[0]
        return float((w - w0) @ H @ (w - w0)), w

    for r in range(3):
        removed, error = [], 0.0
        for t in range(6):
            candidates = {j: best_error(W[r], removed + [j]) for j in range(6) if j not in removed}
            j = min(candidates, key=lambda c: candidates[c][0])
            assert int(order[r, t]) == j
            assert float(losses[r, t]) == pytest.approx(candidates[j][0] - error, rel=1e-7, abs=1e-9)
            removed.append(j)
            error = candidates[j][0]
            if t == 3:  # the weights after 4 removals: the OBS optimum for that set
                _, _, W4 = obs_trace_ref(W[r:r + 1], Hinv, 4)
                torch.testing.assert_close(W4[0], candidates[j][1], rtol=1e-7, atol=1e-9)


SMALL = [(1, 1, 1), (3, 17, 17), (7, 20, 9), (3, 65, 0)]
LARGE = [(5, 37, 37), (16, 33, 33), (4, 131, 131)]
CASES = ([(b, *c) for b in BACKENDS for c in SMALL] + [("cpp", *c) for c in LARGE if "cpp" in BACKENDS]
         + [pytest.param("triton", *c, marks=pytest.mark.slow) for c in LARGE if "triton" in BACKENDS])


@pytest.mark.parametrize("backend,rows,d,steps", CASES)
def test_kernel_equals_reference(backend, rows, d, steps):
    W, H, Hinv = problem(rows, d, seed=rows * 100 + d)
    ref = obs_trace_ref(W, Hinv, steps)
    with use_backend(backend):
        order, losses, W_out = obs_trace(W.float(), Hinv.float(), steps)
    assert order.dtype == torch.int64 and losses.dtype == torch.float32 and W_out.dtype == torch.float32
    assert torch.equal(order, ref[0])
    torch.testing.assert_close(losses.double(), ref[1], rtol=2e-4, atol=1e-6)
    torch.testing.assert_close(W_out.double(), ref[2], rtol=2e-4, atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_kernel_full_trace_matches_closed_form(backend):
    """After k removals the weights equal the closed-form OBS compensation of the removed set."""
    W, H, Hinv = problem(3, 23, seed=5)
    with use_backend(backend):
        order, _, W_out = obs_trace(W.float(), Hinv.float(), 17)
    keep = torch.ones(3, 23, dtype=torch.bool)
    keep.scatter_(1, order, False)
    torch.testing.assert_close(W_out.double(), compensate(W, H, keep), rtol=1e-3, atol=1e-4)
    assert bool((W_out[~keep] == 0).all())


def test_cpp_threads_agree():
    if "cpp" not in BACKENDS:
        pytest.skip(why_unavailable("cpp", torch.device("cpu")))
    W, _, Hinv = problem(9, 24, seed=3)
    with use_backend("cpp"):
        threads = torch.get_num_threads()
        try:
            torch.set_num_threads(1)
            one = obs_trace(W.float(), Hinv.float(), 24)
            torch.set_num_threads(2)
            two = obs_trace(W.float(), Hinv.float(), 24)
        finally:
            torch.set_num_threads(threads)
    for a, b in zip(one, two):
        assert torch.equal(a, b)


def test_errors():
    W, _, Hinv = problem(2, 5, seed=0)
    with pytest.raises(ValueError, match="steps must be in"):
        obs_trace(W.float(), Hinv.float(), 6)
    with pytest.raises(ValueError, match="Hinv must be"):
        obs_trace(W.float(), Hinv[:4, :4].float(), 2)
    with pytest.raises(ValueError, match="2-D"):
        obs_trace(W[0].float(), Hinv.float(), 2)
    for backend in BACKENDS:
        with use_backend(backend), pytest.raises(BackendUnavailableError, match="float32"):
            obs_trace(W, Hinv, 2)
    with use_backend("cuda"), pytest.raises(BackendUnavailableError):
        obs_trace(W.float(), Hinv.float(), 2)


def test_float64_runs_on_the_reference():
    W, _, Hinv = problem(2, 7, seed=2)
    for a, b in zip(obs_trace(W, Hinv, 7), obs_trace_ref(W, Hinv, 7)):
        assert torch.equal(a, b)


def test_ties_take_the_lowest_index():
    W = torch.ones(2, 4)
    Hinv = torch.eye(4)
    for backend in BACKENDS + ["reference"]:
        with use_backend(backend):
            order, _, _ = obs_trace(W, Hinv, 4)
        assert order.tolist() == [[0, 1, 2, 3]] * 2, backend


def test_brute_force_helper_is_optimal():
    """compensate() is the constrained minimiser: no random feasible point does better."""
    W, H, _ = problem(1, 5, seed=9)
    keep = torch.tensor([[True, False, True, True, False]])
    w = compensate(W, H, keep)[0]
    best = float((w - W[0]) @ H @ (w - W[0]))
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        v = w + 0.1 * torch.randn(5, generator=g, dtype=torch.float64) * keep[0]
        assert float((v - W[0]) @ H @ (v - W[0])) >= best - 1e-12
    assert list(itertools.compress(range(5), (~keep[0]).tolist())) == [1, 4] and w[1] == 0 and w[4] == 0
