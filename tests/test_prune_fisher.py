"""WoodFisher and CHITA internals on tiny problems: the joint OBS update is the constrained least-squares optimum,
the Woodbury inverse diagonal is exact, full and one-block WoodFisher agree, stages remove exactly and for good."""
import copy

import pytest
import torch
from torch import nn

from weightcast.prune import BiasFreeMLP, prune
from weightcast.prune.fisher import (BlockFisher, chita_step, damping, inverse_diagonal, optimal_update,
                                     per_sample_grads, prune_in_stages, stage_sparsities, woodfisher_step)


def problem(n=7, p=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, p, generator=g, dtype=torch.float64), torch.randn(p, generator=g, dtype=torch.float64)


def quadratic(A, lam, w0, w):
    d = w - w0
    return float(0.5 * (A @ d).square().sum() + 0.5 * lam * d.square().sum())


def test_joint_obs_update_is_the_constrained_least_squares_optimum():
    A, w0 = problem()
    lam = 0.3
    keep = torch.tensor([1, 0, 1, 1, 0, 0, 1, 1, 0, 1], dtype=torch.bool)
    ours = optimal_update(A, lam, w0, keep)
    Fm = A.T @ A + lam * torch.eye(10, dtype=torch.float64)
    Finv = torch.linalg.inv(Fm)
    Q = (~keep).nonzero().squeeze(1)
    obs = w0 - Finv[:, Q] @ torch.linalg.solve(Finv[Q][:, Q], w0[Q])   # -F^-1 E_Q (E_Q^T F^-1 E_Q)^-1 w_Q
    # least squares over the kept weights: [A_S; sqrt(lam) I] d_S ~ [A_Q w0_Q; 0]
    S = keep.nonzero().squeeze(1)
    lhs = torch.cat([A[:, S], lam ** 0.5 * torch.eye(len(S), dtype=torch.float64)])
    rhs = torch.cat([A[:, Q] @ w0[Q], torch.zeros(len(S), dtype=torch.float64)])
    lsq = torch.zeros(10, dtype=torch.float64)
    lsq[S] = w0[S] + torch.linalg.lstsq(lhs, rhs).solution
    torch.testing.assert_close(ours, lsq)
    torch.testing.assert_close(ours, torch.where(keep, obs, 0.0))
    assert bool((ours[~keep] == 0).all())
    for _ in range(20):   # no other weights on the support do better
        other = torch.where(keep, ours + 0.05 * torch.randn(10, dtype=torch.float64), 0.0)
        assert quadratic(A, lam, w0, other) >= quadratic(A, lam, w0, ours)


def test_woodbury_inverse_diagonal_is_exact():
    A, _ = problem(n=5, p=12, seed=1)
    lam = 0.05
    explicit = torch.linalg.inv(A.T @ A + lam * torch.eye(12, dtype=torch.float64)).diagonal()
    torch.testing.assert_close(inverse_diagonal(A, lam), explicit)


def test_full_woodfisher_equals_one_block_and_removes_the_cheapest():
    A, w = problem(n=6, p=9, seed=2)
    G = A.float() * 6 ** 0.5
    keep_full, w_full = woodfisher_step(w, G, 4, rel_damp=0.1)
    keep_block, w_block = woodfisher_step(w, G, 4, rel_damp=0.1, blocks=[(0, 9)])
    assert torch.equal(keep_full, keep_block) and int((~keep_full).sum()) == 4
    torch.testing.assert_close(w_full, w_block)
    Ad = G.double() / 6 ** 0.5
    rho = w ** 2 / inverse_diagonal(Ad, damping(Ad, 0.1))
    assert set((~keep_full).nonzero().squeeze(1).tolist()) == set(torch.topk(rho, 4, largest=False).indices.tolist())


def test_chita_step_removes_k_improves_on_magnitude_and_is_optimal_on_its_support():
    A, w = problem(n=8, p=14, seed=3)
    G = A.float() * 8 ** 0.5
    keep, new = chita_step(w, G, 9, rel_damp=0.01)
    assert int((~keep).sum()) == 9 and bool((new[~keep] == 0).all())
    Ad = G.double() / 8 ** 0.5
    lam = damping(Ad, 0.01)
    magnitude = torch.zeros(14, dtype=torch.bool)
    magnitude[torch.topk(w.abs(), 5).indices] = True
    start = quadratic(Ad, lam, w, torch.where(magnitude, w, 0.0))   # IHT's starting point
    assert quadratic(Ad, lam, w, new) < start
    torch.testing.assert_close(new, optimal_update(Ad, lam, w, keep), rtol=1e-5, atol=1e-6)


def test_block_chita_with_one_block_is_full_chita_and_each_block_is_updated_on_its_own():
    A, w = problem(n=8, p=14, seed=4)
    G = A.float() * 8 ** 0.5
    keep_full, w_full = chita_step(w, G, 9, rel_damp=0.01)
    keep_one, w_one = chita_step(w, G, 9, rel_damp=0.01, blocks=[(0, 14)])
    assert torch.equal(keep_full, keep_one)
    torch.testing.assert_close(w_full, w_one)
    keep, new = chita_step(w, G, 9, rel_damp=0.01, blocks=[(0, 5), (5, 14)])
    assert int((~keep).sum()) == 9 and bool((new[~keep] == 0).all())
    Ad = G.double() / 8 ** 0.5
    lam = damping(Ad, 0.01)
    for a, b in ((0, 5), (5, 14)):   # the block-diagonal F: each block is its own ridge problem
        torch.testing.assert_close(new[a:b], optimal_update(Ad[:, a:b], lam, w[a:b], keep[a:b]))
    for blocks in ([(5, 14), (0, 5)], [(0, 5), (6, 14)], [(0, 5)], [(0, 0), (0, 14)]):
        with pytest.raises(ValueError, match="blocks must tile 0..14 in order"):
            chita_step(w, G, 9, blocks=blocks)


@pytest.mark.parametrize("seed", range(6))
def test_chita_ends_at_least_as_low_as_magnitudes_and_woodfishers_supports(seed):
    """IHT is local: started from the better of the two supports (each with its optimal update), its objective
    is at most either's -- from magnitude's alone it could stay far above WoodFisher's."""
    A, w = problem(n=6, p=40, seed=seed)
    A[:, :20] *= 10.0   # ill-conditioned: the largest weights are not the cheapest to remove
    G = A.float() * 6 ** 0.5
    k = 30
    keep, new = chita_step(w, G, k, rel_damp=1e-3)
    Ad = G.double() / 6 ** 0.5
    lam = damping(Ad, 1e-3)
    ends = {}
    for name, score in (("magnitude", w.abs()), ("woodfisher", w ** 2 / inverse_diagonal(Ad, lam))):
        support = torch.zeros(40, dtype=torch.bool)
        support[torch.topk(score, 40 - k).indices] = True
        ends[name] = quadratic(Ad, lam, w, optimal_update(Ad, lam, w, support))
    assert quadratic(Ad, lam, w, new) <= min(ends.values()) * (1 + 1e-5)


def test_stage_sparsities():
    assert stage_sparsities(0.9, 1) == [0.9]
    s = stage_sparsities(0.9, 4)
    assert len(s) == 4 and abs(s[-1] - 0.9) < 1e-12 and all(a < b for a, b in zip(s, s[1:]))
    torch.testing.assert_close(torch.tensor([1 - v for v in s]), torch.tensor([0.1 ** (i / 4) for i in range(1, 5)]))


@pytest.mark.parametrize("method,kwargs", [("woodfisher", {}), ("woodfisher", {"block_size": 50}), ("chita", {}),
                                           ("chita", {"block_size": 50})])
def test_stages_remove_exactly_and_for_good(method, kwargs):
    torch.manual_seed(0)
    model = BiasFreeMLP((1, 6, 6), 4, (12, 8))
    x, y = torch.randn(64, 1, 6, 6), torch.randint(0, 4, (64,))
    p = 36 * 12 + 12 * 8 + 8 * 4
    before = copy.deepcopy(model.state_dict())
    one = prune_in_stages(model, 0.5, x, y, method, stages=1, **kwargs)
    three = prune_in_stages(model, 0.85, x, y, method, stages=3, **kwargs)
    for result, s in ((one, 0.5), (three, 0.85)):
        assert sum(int((~m).sum()) for m, _ in result.values()) == round(s * p)
        assert all(bool((w[~m] == 0).all()) for m, w in result.values())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())   # the model is not changed
    # the first of three stages to 0.85 is one stage to 1 - 0.15^(1/3): its removed weights stay removed
    first = prune_in_stages(model, stage_sparsities(0.85, 3)[0], x, y, method, stages=1, **kwargs)
    for name, (mask, _) in first.items():
        assert not bool((three[name][0] & ~mask).any()), name


def test_stages_through_prune_and_bad_stages():
    torch.manual_seed(0)
    model = BiasFreeMLP((1, 6, 6), 4, (12, 8))
    x, y = torch.randn(32, 1, 6, 6), torch.randint(0, 4, (32,))
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match="stages must be a positive integer"):
        prune(model, 0.5, "woodfisher", data=(x, y), stages=0)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    masks = prune(model, 0.5, "chita", data=(x, y), stages=2)
    assert sum(int((~m).sum()) for m in masks.values()) == round(0.5 * (36 * 12 + 12 * 8 + 8 * 4))


def test_per_sample_grads_match_autograd():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(5, 3, bias=False), nn.ReLU(), nn.Linear(3, 2))
    x, y = torch.randn(4, 5), torch.tensor([0, 1, 1, 0])
    G = per_sample_grads(model, x, y)
    for i in range(4):
        model.zero_grad()
        nn.functional.cross_entropy(model(x[i:i + 1]), y[i:i + 1]).backward()
        torch.testing.assert_close(G[i], torch.cat([model[1].weight.grad.flatten(), model[3].weight.grad.flatten()]))


def test_per_sample_grads_keep_only_the_columns_asked_for_in_any_chunking_and_refuse_an_empty_batch():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(5, 3, bias=False), nn.ReLU(), nn.Linear(3, 2))
    x, y = torch.randn(7, 5), torch.randint(0, 2, (7,))
    full = per_sample_grads(model, x, y)
    columns = torch.rand(full.shape[1]) > 0.4
    for chunk in (1, 3, 128):   # chunks that divide N, that do not, and one larger than N
        torch.testing.assert_close(per_sample_grads(model, x, y, chunk=chunk), full)
        torch.testing.assert_close(per_sample_grads(model, x, y, chunk=chunk, columns=columns), full[:, columns])
    with pytest.raises(ValueError, match="at least one example"):
        per_sample_grads(model, x[:0], y[:0])


def test_block_fisher_is_the_damped_fisher_of_the_whole_gradient_matrix_cut_into_blocks():
    """The blocks are formed one at a time from G; the damping is still that of all of A = G / sqrt(N)."""
    G = torch.randn(9, 14, generator=torch.Generator().manual_seed(3))
    A = G.double() / 3.0
    lam = damping(A, 0.02)
    whole = A.T @ A + lam * torch.eye(14, dtype=torch.float64)
    fisher = BlockFisher(G, 0.02, [(0, 5), (5, 6), (6, 14)])
    assert fisher.lam == lam
    for (a, b), Fb, inv in zip(fisher.blocks, fisher.F, fisher.inverses):
        torch.testing.assert_close(Fb, whole[a:b, a:b])
        torch.testing.assert_close(inv, torch.linalg.inv(whole[a:b, a:b]))
        before = A[:, a:b].T @ A[:, a:b]   # how blocks were formed from all of A before: bit for bit the same
        before.diagonal().add_(lam)
        assert torch.equal(Fb, before)


def test_per_sample_grads_of_a_sequence_model_are_its_mean_token_loss_and_woodfisher_prunes_it():
    """A GPT's (T, vocab) outputs per example failed inside cross_entropy ("Expected target size [1, 103]")."""
    from weightcast.models import GPT
    from weightcast.prune.layers import prunable_layers

    torch.manual_seed(0)
    model = GPT(vocab_size=11, block_size=6, n_layer=1, n_head=2, n_embd=8).eval()
    x, y = torch.randint(0, 11, (3, 6)), torch.randint(0, 11, (3, 6))
    G = per_sample_grads(model, x, y)
    layers = list(prunable_layers(model).values())
    for i in range(3):
        model.zero_grad()
        nn.functional.cross_entropy(model(x[i:i + 1]).flatten(0, 1), y[i]).backward()
        torch.testing.assert_close(G[i], torch.cat([m.weight.grad.flatten() for m in layers]))
    with pytest.raises(ValueError, match=r"labels y run from \d+ to 11, but the model has 11 classes"):
        prune(model, 0.5, "woodfisher", data=(x, torch.where(y == 0, 11, y)), stages=2)   # the class axis is last
    prune(model, 0.5, "woodfisher", data=(x, y), stages=2)
    alive = sum(int(m.weight_mask.sum()) for m in layers)
    assert alive == sum(m.weight.numel() for m in layers) - round(0.5 * sum(m.weight.numel() for m in layers))


@pytest.mark.parametrize("method", ["woodfisher", "chita"])
def test_default_stages_are_the_methods_own(method, monkeypatch):
    from weightcast.prune import fisher

    torch.manual_seed(0)
    model = BiasFreeMLP((1, 6, 6), 4, (12, 8))
    x, y = torch.randn(32, 1, 6, 6), torch.randint(0, 4, (32,))
    calls = []
    real = fisher.per_sample_grads
    monkeypatch.setattr(fisher, "per_sample_grads", lambda *a, **k: calls.append(1) or real(*a, **k))
    prune(model, 0.5, method, data=(x, y))   # through prune(): no stages given
    assert len(calls) == fisher.DEFAULT_STAGES[method]
    assert fisher.DEFAULT_STAGES["chita"] != fisher.DEFAULT_STAGES["woodfisher"]


@pytest.mark.parametrize("size", [(5, 5), (4, 5), (3, 4)])
def test_per_sample_grads_keep_torchs_class_dimension_for_dense_outputs(size):
    """Outputs (classes, d1, ...) per example, torch's layout for cross_entropy: a sequence-model rule that took
    the last dimension as the classes broke it (wrong sizes, or wrong gradients where classes == d2)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 5, 3, padding=1, bias=False))   # (5 classes, *size) per example
    x, y = torch.randn(3, 2, *size), torch.randint(0, 5, (3, *size))
    G = per_sample_grads(model, x, y)
    for i in range(3):
        model.zero_grad()
        nn.functional.cross_entropy(model(x[i:i + 1]), y[i:i + 1]).backward()
        torch.testing.assert_close(G[i], model[0].weight.grad.flatten())


@pytest.mark.parametrize("method,block_size", [("woodfisher", None), ("woodfisher", 4), ("chita", None), ("chita", 4)])
def test_stages_with_nothing_left_to_remove_are_skipped(method, block_size):
    """On 10 weights, 8 stages to s = 0.98 remove all ten by stage 7: stage 8 has no weight alive and none to
    remove (with Fisher blocks it once failed on an empty block list)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(5, 2, bias=False))
    x, y = torch.randn(16, 5), torch.randint(0, 2, (16,))
    assert round(stage_sparsities(0.98, 8)[-2] * 10) == 10
    ((mask, weight),) = prune_in_stages(model, 0.98, x, y, method, stages=8, block_size=block_size).values()
    assert not bool(mask.any()) and bool((weight == 0).all())


def test_stages_read_only_the_surviving_weights_gradients(monkeypatch):
    """Each stage asks per_sample_grads for the surviving columns only (the memory of the pruned ones is never
    held), and gets what slicing the full matrix would give."""
    import weightcast.prune.fisher as fisher

    torch.manual_seed(0)
    model = BiasFreeMLP((1, 6, 6), 4, (12, 8))
    x, y = torch.randn(32, 1, 6, 6), torch.randint(0, 4, (32,))
    asked = []

    def recording(model, x, y, columns=None, **kwargs):
        full = per_sample_grads(model, x, y, **kwargs)
        G = per_sample_grads(model, x, y, columns=columns, **kwargs)
        assert columns is not None and torch.equal(G, full[:, columns])
        asked.append(int(columns.sum()))
        return G

    monkeypatch.setattr(fisher, "per_sample_grads", recording)
    p = 36 * 12 + 12 * 8 + 8 * 4
    prune_in_stages(model, 0.75, x, y, "woodfisher", stages=2, block_size=50)
    assert asked == [p, p - round(stage_sparsities(0.75, 2)[0] * p)]
