"""Dynamical low-rank training: layers, conversion, the KLS integrator against its three-pass reference."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from weightcast import lowrank as lr
from weightcast.lowrank.integrator import _base_step

from helpers import TiedHead


def _small_lenet(dtype=torch.float64, seed=0):
    """A small conv+linear model with odd sizes: conv 3->7 (3x3, pad 1), conv 7->5 (stride 2), fc 5*4*4 -> 13 -> 3."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(3, 7, 3, padding=1), nn.ReLU(), nn.Conv2d(7, 5, 3, stride=2), nn.ReLU(),
                          nn.Flatten(), nn.Linear(80, 13), nn.ReLU(), nn.Linear(13, 3)).to(dtype)
    lr.to_low_rank(model, ["0", "2", "5"], rank=0.6)
    return model


def _batch(dtype=torch.float64, seed=1, n=6):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 9, 9, generator=g, dtype=dtype), torch.randint(0, 3, (n,), generator=g)


def _one_pass_step(model, opt, x, y):
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    opt.step()


def test_forward_matches_dense_and_to_dense_roundtrip():
    torch.manual_seed(0)
    dense = nn.Sequential(nn.Conv2d(3, 7, 3, padding=1, dilation=1), nn.ReLU(), nn.Conv2d(7, 5, 3, stride=2),
                          nn.Flatten(), nn.Linear(80, 13)).double()
    x, _ = _batch()
    low = lr.to_low_rank(copy.deepcopy(dense), rank=1.0)  # full rank: the same function
    assert isinstance(low[0], lr.LowRankConv2d) and isinstance(low[4], lr.LowRankLinear)
    torch.testing.assert_close(low(x), dense(x), rtol=1e-10, atol=1e-10)
    back = lr.to_dense(copy.deepcopy(low))
    assert type(back[0]) is nn.Conv2d and type(back[4]) is nn.Linear
    torch.testing.assert_close(back(x), dense(x), rtol=1e-10, atol=1e-10)
    for a, b in zip(back.parameters(), dense.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_svd_init_uses_right_singular_vectors_not_their_transpose():
    torch.manual_seed(0)
    lin = nn.Linear(9, 6).double()  # non-square: V (9, r) must be the transpose of svd's Vᴴ
    low = lr.to_low_rank(nn.Sequential(lin), rank=3)[0]
    P, s, Qh = torch.linalg.svd(lin.weight.detach())
    best = P[:, :3] @ torch.diag(s[:3]) @ Qh[:3]
    torch.testing.assert_close(low.weight_matrix().detach(), best)
    torch.testing.assert_close(low.U.T @ low.U, torch.eye(3, dtype=torch.float64))
    torch.testing.assert_close(low.V.T @ low.V, torch.eye(3, dtype=torch.float64))


def test_lr_zero_step_reproduces_w():
    model = _small_lenet()
    opt = lr.KLS(model, lr=0.0, theta=0.0, min_rank=1)
    before = {n: l.weight_matrix().clone() for n, l in opt.layers.items()}
    x, y = _batch()
    _one_pass_step(model, opt, x, y)
    for name, layer in opt.layers.items():
        torch.testing.assert_close(layer.weight_matrix(), before[name], rtol=0, atol=1e-6)
        eye = torch.eye(layer.rank, dtype=torch.float64)
        torch.testing.assert_close(layer.U.T @ layer.U, eye, rtol=0, atol=1e-10)
        torch.testing.assert_close(layer.V.T @ layer.V, eye, rtol=0, atol=1e-10)


def test_augmented_core_matches_definition():
    torch.manual_seed(0)
    U = torch.linalg.qr(torch.randn(11, 4, dtype=torch.float64))[0]
    K = torch.randn(11, 4, dtype=torch.float64)
    U_hat = lr.augment(U, K)
    assert U_hat.shape == (11, 8)
    torch.testing.assert_close(U_hat.T @ U_hat, torch.eye(8, dtype=torch.float64))
    Q = torch.linalg.qr(torch.cat([K, U], 1))[0]  # the definition's basis: same span
    torch.testing.assert_close(Q @ Q.T, U_hat @ U_hat.T)
    # the embedded core [[S, 0], [0, 0]] is (ÛᵀU) S (V̂ᵀV)ᵀ
    V = torch.linalg.qr(torch.randn(7, 4, dtype=torch.float64))[0]
    V_hat = lr.augment(V, torch.randn(7, 4, dtype=torch.float64))
    assert V_hat.shape == (7, 7)  # capped at m = 7
    S = torch.randn(4, 4, dtype=torch.float64)
    core = (U_hat.T @ U) @ S @ (V_hat.T @ V).T
    expected = torch.zeros(8, 7, dtype=torch.float64)
    expected[:4, :4] = S
    torch.testing.assert_close(core, expected)
    # nearly rank-deficient: K (almost) inside span(U) still gives an orthonormal augmented basis
    for tiny in (0.0, 1e-14, 1e-9):
        K = U @ torch.randn(4, 4, dtype=torch.float64) + tiny * torch.randn(11, 4, dtype=torch.float64)
        K[:, 0] += tiny * 1e3 * torch.randn(11, dtype=torch.float64)  # one direction well outside, the rest not
        U_hat = lr.augment(U, K)
        torch.testing.assert_close(U_hat.T @ U_hat, torch.eye(8, dtype=torch.float64), rtol=0, atol=1e-12)
        assert torch.equal(U_hat[:, :4], U)


@pytest.mark.parametrize("absolute", [False, True])
def test_truncation_rank_bound(absolute):
    torch.manual_seed(0)
    sigma = torch.rand(30, dtype=torch.float64).sort(descending=True).values
    for theta in (0.0, 0.05, 0.15, 0.3, 0.9):
        r = lr.truncation_rank(sigma, theta, absolute)
        tol = theta if absolute else theta * sigma.norm()
        assert sigma[r:].norm() <= tol + 1e-15
        if r > 0:
            assert sigma[r - 1:].norm() > tol  # smallest such rank


@pytest.mark.parametrize("capture", ["auto", "projections", "dense"])
@pytest.mark.parametrize("base,kw", [("sgd", dict(momentum=0.9, weight_decay=1e-3)),
                                     ("sgd", dict(momentum=0.5, nesterov=True)),
                                     ("adamw", dict(weight_decay=0.01))])
def test_one_pass_equals_three_pass(base, kw, capture):
    m1 = _small_lenet()
    for layer in lr.low_rank_layers(m1).values():
        layer.capture = capture
    m3 = copy.deepcopy(m1)
    o1 = lr.KLS(m1, lr=0.1, theta=0.1, base=base, **kw)
    o3 = lr.KLSThreePass(m3, lr=0.1, theta=0.1, base=base, **kw)
    grads = {}
    orig = o3._kl_gradients

    def spy(closure):
        grads["kl3"] = orig(closure)
        return grads["kl3"]

    o3._kl_gradients = spy
    for step in range(4):
        x, y = _batch(seed=step)
        m1.zero_grad()
        F.cross_entropy(m1(x), y).backward()
        kl1 = o1._kl_gradients(None)
        o1.step()
        o3.step(lambda: F.cross_entropy(m3(x), y))
        for name in kl1:
            for g1, g3 in zip(kl1[name], grads["kl3"][name]):
                torch.testing.assert_close(g1, g3, rtol=1e-8, atol=1e-10)
        assert o1.ranks() == o3.ranks()
        for (n1, l1), (n3, l3) in zip(o1.layers.items(), o3.layers.items()):
            torch.testing.assert_close(l1.weight_matrix(), l3.weight_matrix(), rtol=1e-8, atol=1e-10)
        for p1, p3 in zip(o1.param_groups[0]["params"], o3.param_groups[0]["params"]):
            torch.testing.assert_close(p1, p3, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("capture", ["projections", "dense"])
def test_s_gradient_equals_autograd_on_augmented_core(capture):
    model = _small_lenet()
    for layer in lr.low_rank_layers(model).values():
        layer.capture = capture
    opt = lr.KLS(model, lr=0.1, theta=0.1)
    x, y = _batch()
    F.cross_entropy(model(x), y).backward()
    torch.manual_seed(3)
    augmented = {n: (lr.augment(l.U, torch.randn_like(l.U)), lr.augment(l.V, torch.randn_like(l.V)))
                 for n, l in opt.layers.items()}
    g_s = opt._s_gradients(augmented, None)
    ref = lr.KLSThreePass.__new__(lr.KLSThreePass)  # reuse the reference's S pass on the same model
    ref.layers, ref.param_groups = opt.layers, [{"params": []}]
    g_ref = ref._s_gradients(augmented, lambda: F.cross_entropy(model(x), y))
    for name in g_s:
        torch.testing.assert_close(g_s[name], g_ref[name], rtol=1e-9, atol=1e-12)


def test_rank_adapts_and_respects_min_and_max():
    model = _small_lenet()
    opt = lr.KLS(model, lr=0.5, theta=0.6, min_rank=2)
    for step in range(6):
        _one_pass_step(model, opt, *_batch(seed=step))
        for layer in opt.layers.values():
            assert 2 <= layer.rank <= layer.max_rank
    assert min(opt.ranks().values()) == 2  # a large theta drives the ranks to the minimum
    model = _small_lenet()
    opt = lr.KLS(model, lr=0.5, theta=0.0, min_rank=1)  # theta 0 keeps every non-zero direction: ranks grow
    start = opt.ranks()
    _one_pass_step(model, opt, *_batch())
    assert all(opt.ranks()[n] > start[n] for n in start if opt.layers[n].rank < opt.layers[n].max_rank)
    assert all(layer.rank <= layer.max_rank for layer in opt.layers.values())
    fixed = _small_lenet()
    opt = lr.KLS(fixed, lr=0.5, theta=0.6, fixed_rank=True)
    start = opt.ranks()
    _one_pass_step(fixed, opt, *_batch())
    assert opt.ranks() == start


def test_truncation_meets_theta_after_step():
    model = _small_lenet()
    opt = lr.KLS(model, lr=0.3, theta=0.2, min_rank=1)
    seen = {}
    orig = torch.linalg.svd

    def spy(a, *args, **kwargs):
        out = orig(a, *args, **kwargs)
        seen.setdefault("sigma", []).append(out[1])
        return out

    torch.linalg.svd = spy
    try:
        _one_pass_step(model, opt, *_batch())
    finally:
        torch.linalg.svd = orig
    for sigma, layer in zip(seen["sigma"], opt.layers.values()):
        r = layer.rank
        assert r < layer.max_rank  # the bound is not cut short by max_rank here
        assert sigma[r:].norm() <= 0.2 * sigma.norm() + 1e-12
        assert sigma[r - 1:].norm() > 0.2 * sigma.norm()
        w_sigma = torch.linalg.svdvals(layer.weight_matrix())
        torch.testing.assert_close(w_sigma[:r], sigma[:r])
        assert float(w_sigma[r:].norm()) < 1e-12


@pytest.mark.parametrize("base", ["sgd", "adamw"])
def test_resume_is_bit_exact(base, tmp_path):
    kw = dict(momentum=0.9) if base == "sgd" else {}
    model = _small_lenet(torch.float32)
    opt = lr.KLS(model, lr=0.2, theta=0.15, base=base, **kw)
    for step in range(3):
        _one_pass_step(model, opt, *_batch(torch.float32, seed=step))
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, tmp_path / "ckpt.pt")
    for step in range(3, 6):
        _one_pass_step(model, opt, *_batch(torch.float32, seed=step))
    fresh = _small_lenet(torch.float32, seed=5)  # other values; the checkpoint's ranks differ from the initial ones
    ckpt = torch.load(tmp_path / "ckpt.pt")
    fresh.load_state_dict(ckpt["model"])
    opt2 = lr.KLS(fresh, lr=0.2, theta=0.15, base=base, **kw)
    opt2.load_state_dict(ckpt["opt"])
    for step in range(3, 6):
        _one_pass_step(fresh, opt2, *_batch(torch.float32, seed=step))
    assert opt2.ranks() == opt.ranks()
    for (k, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), k


def test_optimizer_state_loaded_before_model_is_refused():
    model = _small_lenet()
    opt = lr.KLS(model, lr=0.5, theta=0.3, momentum=0.9)
    _one_pass_step(model, opt, *_batch())
    other = _small_lenet()
    with pytest.raises(ValueError, match="load the model's state_dict"):
        lr.KLS(other, lr=0.5, theta=0.3, momentum=0.9).load_state_dict(opt.state_dict())


@pytest.mark.parametrize("base,key,decay", [("sgd", "momentum_buffer", 0.9), ("adamw", "exp_avg", 0.9)])
def test_state_is_carried_into_the_new_basis(base, key, decay):
    """A zero-gradient step moves the weights by the momentum alone and rotates the bases; the first moments,
    read back in W coordinates (K-state Vᵀ, U S-state Vᵀ), are the old ones times the decay, not left in the old
    coordinates."""
    model = _small_lenet()
    kw = dict(momentum=0.9) if base == "sgd" else dict(betas=(0.9, 0.999))
    opt = lr.KLS(model, lr=0.1, theta=0.0, base=base, min_rank=1, **kw)
    _one_pass_step(model, opt, *_batch())
    before = {}
    for name, layer in opt.layers.items():
        st = opt.state["lowrank:" + name]
        before[name] = (st["K"][key] @ layer.V.T, st["L"][key] @ layer.U.T,
                        layer.U @ st["S"][key] @ layer.V.T, layer.U.clone(), layer.V.clone())
    x, _ = _batch(seed=7)
    opt.zero_grad()
    (model(x) * 0).sum().backward()
    opt.step()
    checked = 0
    for name, layer in opt.layers.items():
        st = opt.state["lowrank:" + name]
        k_w, l_w, s_w, U_old, V_old = before[name]
        U, V = layer.U, layer.V
        if not (torch.allclose(U @ (U.T @ U_old), U_old, atol=1e-9)
                and torch.allclose(V @ (V.T @ V_old), V_old, atol=1e-9)):
            continue  # truncation removed an old direction: the state is projected, not kept whole
        torch.testing.assert_close(st["K"][key] @ V.T, decay * k_w, rtol=1e-8, atol=1e-10)
        torch.testing.assert_close(st["L"][key] @ U.T, decay * l_w, rtol=1e-8, atol=1e-10)
        torch.testing.assert_close(U @ st["S"][key] @ V.T, decay * s_w, rtol=1e-8, atol=1e-10)
        assert not torch.allclose(U[:, :U_old.shape[1]].abs(), U_old.abs(), atol=1e-3)  # the basis did rotate
        checked += 1
    assert checked >= 1


def test_base_step_matches_torch_optimizers():
    torch.manual_seed(0)
    for cls, kw in [(torch.optim.SGD, dict(lr=0.1, momentum=0.9, weight_decay=0.01, nesterov=True)),
                    (torch.optim.AdamW, dict(lr=0.01, weight_decay=0.1, betas=(0.8, 0.95), eps=1e-6))]:
        p = torch.randn(37, dtype=torch.float64, requires_grad=True)
        q = p.detach().clone()
        opt = cls([p], **kw)
        group = dict(base="sgd" if cls is torch.optim.SGD else "adamw", dampening=0.0, momentum=0.0,
                     nesterov=False, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
        group.update(kw)
        state = {}
        for step in range(1, 5):
            g = torch.randn(37, dtype=torch.float64)
            p.grad = g.clone()
            opt.step()
            _base_step(q, g, state, group, step, inplace=True)
            torch.testing.assert_close(q, p.detach(), rtol=1e-12, atol=1e-14)


def test_counts_reference_lenet():
    model = lr.ReferenceLeNet5()
    assert lr.parameter_count(model) == 430_500  # the paper's dense count (weights, no biases)
    lr.to_low_rank(model, lr.ReferenceLeNet5.LOW_RANK_LAYERS, rank=1.0)
    for name, r in zip(lr.ReferenceLeNet5.LOW_RANK_LAYERS, (9, 16, 28)):
        layer = model.get_submodule(name)
        layer.set_factors(layer.U[:, :r], layer.S[:r, :r], layer.V[:, :r])
    ref = 20 * 9 + 81 + 50 * 16 + 256 + 500 * 28 + 784 + 5000
    assert lr.parameter_count(model, "reference") == ref
    assert lr.parameter_count(model, "full") == ref + 25 * 9 + 500 * 16 + 800 * 28
    assert 1 - ref / 430_500 > 0.95
    flops = lr.forward_flops(model, (1, 28, 28))
    assert flops == 2 * ((25 * 9 + 20 * 9) * 576 + (500 * 16 + 50 * 16) * 64 + 800 * 28 + 500 * 28 + 5000)
    dense_flops = lr.forward_flops(lr.ReferenceLeNet5(), (1, 28, 28))
    assert dense_flops == 2 * (500 * 576 + 25000 * 64 + 400_000 + 5000)


def test_bad_inputs_give_clear_errors():
    model = _small_lenet()
    with pytest.raises(ValueError, match="theta"):
        lr.KLS(model, lr=0.1, theta=-0.1)
    with pytest.raises(ValueError, match="base"):
        lr.KLS(model, lr=0.1, base="lion")
    with pytest.raises(ValueError, match="min_rank"):
        lr.KLS(model, lr=0.1, min_rank=0)
    with pytest.raises(ValueError, match="lr"):
        lr.KLS(model, lr=-1.0)
    with pytest.raises(ValueError, match="no low-rank layers"):
        lr.KLS(nn.Linear(3, 4), lr=0.1)
    with pytest.raises(ValueError, match="rank must be in"):
        lr.LowRankLinear(5, 4, rank=5)
    with pytest.raises(ValueError, match="max_rank"):
        lr.LowRankLinear(5, 4, rank=2, max_rank=6)
    with pytest.raises(ValueError, match="rank"):
        lr.to_low_rank(nn.Sequential(nn.Linear(5, 4)), rank=9)
    with pytest.raises(ValueError, match="not nn.Linear"):
        lr.to_low_rank(nn.Sequential(nn.Linear(5, 4)), ["1"])
    with pytest.raises(ValueError, match="groups"):
        lr.to_low_rank(nn.Sequential(nn.Conv2d(4, 4, 3, groups=2)))
    opt = lr.KLS(model, lr=0.1)
    with pytest.raises(RuntimeError, match="no captured backward"):
        opt.step()
    with pytest.raises(ValueError, match="closure"):
        lr.KLSThreePass(_small_lenet(), lr=0.1).step()


@pytest.mark.parametrize("capture", ["projections", "dense"])
def test_gradient_accumulation_sums_backwards(capture):
    m1 = _small_lenet()
    for layer in lr.low_rank_layers(m1).values():
        layer.capture = capture
    m2 = copy.deepcopy(m1)
    o1, o2 = lr.KLS(m1, lr=0.2, theta=0.1), lr.KLS(m2, lr=0.2, theta=0.1)
    x, y = _batch(n=8)
    o1.zero_grad()
    (F.cross_entropy(m1(x), y, reduction="sum") / 8).backward()
    o1.step()
    o2.zero_grad()
    for half in (slice(0, 4), slice(4, 8)):
        (F.cross_entropy(m2(x[half]), y[half], reduction="sum") / 8).backward()
    o2.step()
    for a, b in zip(o1.layers.values(), o2.layers.values()):
        torch.testing.assert_close(a.weight_matrix(), b.weight_matrix(), rtol=1e-8, atol=1e-10)


def test_first_layer_without_bias():
    model = lr.to_low_rank(nn.Sequential(nn.Linear(5, 8, bias=False), nn.ReLU(), nn.Linear(8, 2, bias=False)),
                           ["0"], rank=3)
    opt = lr.KLS(model, lr=0.1, theta=0.1)
    x = torch.randn(4, 5)
    opt.zero_grad()
    model(x).square().mean().backward()
    opt.step()
    assert opt.ranks()["0"] >= 2


def test_no_grad_forward_does_not_capture():
    model = _small_lenet()
    opt = lr.KLS(model, lr=0.1)
    with torch.no_grad():
        model(_batch()[0])
    assert all(not layer._captured and layer._dense_grad is None for layer in opt.layers.values())


def test_forecasting_over_factors():
    """ForecastSGD over U, S, V works when the factors are trained as plain parameters (fixed parametrisation);
    Forecast around KLS forecasts the non-factor parameters and leaves the factors to the integrator."""
    import weightcast as wc

    model = _small_lenet(torch.float32)
    opt = wc.ForecastSGD(model.parameters(), lr=0.05, forecaster="linear", window=3, jump_every=4, horizon=2)
    for step in range(8):
        x, y = _batch(torch.float32, seed=step)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        assert model[5].U.grad is not None  # factors get ordinary gradients without KLS
        opt.step()
    assert opt.num_jumps == 2  # at steps 4 and 8
    model = _small_lenet(torch.float32)
    kls = lr.KLS(model, lr=0.05, theta=0.1)
    opt = wc.Forecast(kls, forecaster="linear", window=3, jump_every=4, horizon=2)
    factors = {id(p) for layer in kls.layers.values() for p in (layer.U, layer.S, layer.V)}
    assert not any(id(p) in factors for p in opt.param_groups[0]["params"])
    for step in range(8):
        x, y = _batch(torch.float32, seed=step)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    assert opt.num_jumps == 2 and all(layer.rank >= 2 for layer in kls.layers.values())


def test_cli_train_writes_results_table_and_plot(tmp_path):
    from weightcast.cli import main
    from weightcast.results import read_results

    out = tmp_path / "run"
    assert main(["lowrank", "train", "--task", "digits", "--model", "mlp", "--width", "64", "--theta", "0.2",
                 "--dense", "--epochs", "1", "--batch-size", "256", "--out", str(out), "--no-progress"]) == 0
    rows = read_results(out / "lowrank_train.csv")
    names = {r["name"] for r in rows}
    assert names == {"dense", "dlrt theta=0.2"}
    ranks = [r for r in rows if r["metric"].startswith("rank/")]
    assert ranks and all(2 <= float(r["value"]) <= 64 for r in ranks)
    assert any(r["metric"] == "compression_reference" for r in rows)
    assert (out / "lowrank_ranks.png").stat().st_size > 0
    assert "dlrt theta=0.2" in (out / "lowrank_train.md").read_text()


def test_one_pass_equals_three_pass_on_token_sequences():
    """Linear layers on (B, T, C) inputs, as in a transformer's MLP."""
    torch.manual_seed(0)
    m1 = lr.to_low_rank(nn.Sequential(nn.Linear(6, 10), nn.GELU(), nn.Linear(10, 6)).double(), rank=3)
    m3 = copy.deepcopy(m1)
    o1, o3 = lr.KLS(m1, lr=0.1, theta=0.05, momentum=0.9), lr.KLSThreePass(m3, lr=0.1, theta=0.05, momentum=0.9)
    for step in range(3):
        x = torch.randn(4, 5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(step))
        o1.zero_grad()
        m1(x).square().mean().backward()
        o1.step()
        o3.step(lambda: m3(x).square().mean())
        assert o1.ranks() == o3.ranks()
        for a, b in zip(o1.layers.values(), o3.layers.values()):
            torch.testing.assert_close(a.weight_matrix(), b.weight_matrix(), rtol=1e-8, atol=1e-10)


class _Shared(nn.Module):
    """One Linear used under two names."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(8, 8)
        self.b = self.a

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


@pytest.mark.parametrize("layers", [None, ["a"], ["b"], lambda name, m: name == "b"])
def test_a_shared_layer_is_converted_once_under_every_name(layers):
    torch.manual_seed(0)
    model, x = _Shared(), torch.randn(4, 8)
    before = model(x)
    lr.to_low_rank(model, layers)
    assert isinstance(model.a, lr.LowRankLinear) and model.a is model.b
    assert list(lr.low_rank_layers(model)) == ["a"]
    torch.testing.assert_close(model(x), before, rtol=1e-5, atol=1e-5)
    opt = lr.KLS(model, lr=0.1, theta=0.1)   # trains as one layer: both uses' gradients
    opt.zero_grad()
    model(x).square().mean().backward()
    opt.step()
    assert model.a is model.b
    lr.to_dense(model)
    assert type(model.a) is nn.Linear and model.a is model.b


@pytest.mark.parametrize("layers", [None, ["head"]])
def test_a_weight_tied_to_another_module_is_refused(layers):
    model = TiedHead()
    with pytest.raises(ValueError, match=r"head.weight is tied to \['tok.weight'\].*Leave 'head' out of layers, or "
                                         r"untie it first \(model.head.weight = nn.Parameter"):
        lr.to_low_rank(model, layers)
    assert type(model.mid) is nn.Linear and model.head.weight is model.tok.weight   # nothing converted
    lr.to_low_rank(model, lambda name, m: name != "head")   # the way the message gives
    assert isinstance(model.mid, lr.LowRankLinear) and model.head.weight is model.tok.weight
