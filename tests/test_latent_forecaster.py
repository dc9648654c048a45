"""The "latent" forecaster inside ForecastSGD: latent history, residual and direct jumps, state_dict, the guard."""
import io

import pytest
import torch
from torch import nn

import weightcast as wc
from weightcast.forecasters.latent import LatentForecaster
from weightcast.wsl import WeightAutoencoder
from weightcast.wsl.autoencoder import DEFAULT_WEIGHTS


def small_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.LayerNorm(4 * 6 * 6),
                         nn.Linear(4 * 6 * 6, 10))


def train(model, opt, steps, start=0):
    """Steps with deterministic pseudo-gradients (a pull towards 0 plus noise fixed by the step): a smooth,
    forecastable trajectory without the cost of autograd."""
    for t in range(start, start + steps):
        g = torch.Generator().manual_seed(t)
        for p in model.parameters():
            p.grad = 0.5 * p.detach() + 0.05 * torch.randn(p.shape, generator=g)
        opt.step()


def tiny_ae(seed=0, latent=4):
    torch.manual_seed(seed)
    return WeightAutoencoder(token_size=16, latent=latent, hidden=24)


def make_opt(model, ae=None, residual=True, **kw):
    forecaster = LatentForecaster(ae or tiny_ae(), residual=residual)
    sched = dict(window=3, record_every=2, jump_every=6, horizon=4)
    sched.update(kw)
    return wc.ForecastSGD(model.parameters(), lr=0.05, momentum=0.9, forecaster=forecaster, **sched)


def engine_of(opt):
    return opt.engine


def test_latent_history_replaces_raw_snapshots():
    model = small_model()
    opt = make_opt(model)
    (_, bucket), = engine_of(opt).buckets
    codec = engine_of(opt).forecaster._codecs[bucket]
    assert bucket.recorder is not None and bucket.history.dtype == torch.float32
    assert tuple(bucket.history.shape) == (3, codec.tok.num_tokens * 4)
    train(model, opt, 4)
    assert bucket.filled == 2 and bool(bucket.history[:2].abs().sum(1).gt(0).all())
    assert not bool(bucket.history[2].any())


@pytest.mark.parametrize("residual", [True, False])
def test_jumps_apply_and_stay_finite(residual):
    model = small_model()
    opt = make_opt(model, residual=residual)
    train(model, opt, 12)
    assert opt.num_jumps == 2
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())


def test_residual_jump_moves_params_by_the_decoded_latent_difference():
    """params_after - params_before == scale * (decode(z_f) - decode(z_now)) token by token, with z_f the line
    through the stored latents."""
    model = small_model()
    opt = make_opt(model)
    engine = engine_of(opt)
    (_, bucket), = engine.buckets
    codec = engine.forecaster._codecs[bucket]
    seen = {}
    opt.register_jump_hooks(before=lambda o, t: seen.setdefault("before", bucket.packed()))
    train(model, opt, 6)  # records at 2, 4, 6 and jumps at 6 to step 10
    assert opt.num_jumps == 1
    tok, ae = codec.tok, codec.ae
    Z = bucket.history.view(3, tok.num_tokens, 4)
    c = wc.forecasters.least_squares_line_coefficients([2, 4, 6], 10).float()
    delta = (ae.decode(torch.einsum("w,wkd->kd", c, Z), tok.positions) - ae.decode(Z[2], tok.positions))
    scale = codec.token_scale(slice(None))
    expected = tok.detokenize(tok.tokenize(seen["before"]) + delta * scale[:, None], seen["before"].clone())
    torch.testing.assert_close(bucket.packed(), expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(bucket.packed(), seen["before"])


def test_frozen_trajectory_is_kept():
    """Zero gradients (lr stays non-zero: with lr 0 nothing moves and there is no jump): the window holds one
    point repeated, and the forecast keeps it."""
    model = small_model()
    opt = make_opt(model)
    before = [p.detach().clone() for p in model.parameters()]
    for _ in range(6):
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        opt.step()
    assert opt.num_jumps == 1
    for p, q in zip(model.parameters(), before):
        torch.testing.assert_close(p.detach(), q, rtol=0, atol=1e-5)


def test_state_dict_resumes_exactly():
    ae = tiny_ae()
    m1 = small_model()
    o1 = make_opt(m1, ae)
    train(m1, o1, 8)
    buffer = io.BytesIO()
    torch.save(o1.state_dict(), buffer)  # a real copy: torch's load_state_dict may alias the saved tensors
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    m2 = small_model(seed=5)
    m2.load_state_dict(m1.state_dict())
    o2 = make_opt(m2, ae)
    o2.load_state_dict(state)
    train(m1, o1, 8, start=8)
    train(m2, o2, 8, start=8)
    assert o1.num_jumps == o2.num_jumps == 2
    for p, q in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(p, q)


def test_guard_rejection_restores_the_parameters():
    """A guard that never accepts: the params after the rejected jump are exactly plain SGD's."""
    from weightcast.optim.guard import JumpGuard

    model, twin = small_model(), small_model()
    opt = make_opt(model)
    calls = iter(range(10**6))
    engine_of(opt).guard = JumpGuard(lambda: float(next(calls)), tries=2)  # the loss always rises
    sgd = torch.optim.SGD(twin.parameters(), lr=0.05, momentum=0.9)
    train(model, opt, 6)
    train(twin, sgd, 6)
    assert opt.num_jumps == 0 and engine_of(opt).num_rejected_jumps == 1
    for p, q in zip(model.parameters(), twin.parameters()):
        assert torch.equal(p, q)


@pytest.mark.skipif(not DEFAULT_WEIGHTS.is_file(), reason="no shipped autoencoder weights")
@pytest.mark.parametrize("name,kwargs", [("lenet5", {}), ("mlp", {}),
                                         ("gpt", {"vocab_size": 50, "n_layer": 1, "n_embd": 32, "n_head": 2})])
def test_shipped_autoencoder_on_reference_models(name, kwargs):
    """forecaster="latent" by name: the shipped autoencoder on the reference models (convs, linears, norms,
    embeddings, attention projections)."""
    from weightcast import models

    model = models.get(name, **kwargs)
    opt = wc.ForecastSGD(model.parameters(), lr=0.01, forecaster="latent", window=3, record_every=1)
    (_, bucket), = engine_of(opt).buckets
    forecaster = engine_of(opt).forecaster
    kept = bucket.history.numel() * 4 * 5 / 3 + forecaster.map_bytes(bucket)
    assert kept < bucket.numel * 4  # a window of 5 and the maps < one float32 copy of the params
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-2
    for _ in range(3):
        opt.step()
    assert opt.num_jumps == 1 and all(bool(torch.isfinite(p).all()) for p in model.parameters())


def test_latent_history_never_allocates_raw_snapshots():
    """The raw (W, N) window is allocated lazily: a forecaster with its own history never pays for it."""
    model = torch.nn.Sequential(torch.nn.Linear(40, 30), torch.nn.ReLU(), torch.nn.Linear(30, 10))
    opt = wc.ForecastSGD(model.parameters(), lr=0.1, forecaster="latent")
    (_, bucket), = opt.engine.buckets
    assert bucket._history is not None and bucket._history.shape[1] != bucket.padded


def test_farcast_trajectory_keeps_the_initial_latents_and_uses_farcast_weights():
    """trajectory="farcast": one more history row with the initial weights' latents (run-wide scales fixed at
    attach), and the jump's latent forecast is farcast's combination of the window and that row."""
    model = small_model()
    initial = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    forecaster = LatentForecaster(tiny_ae(), trajectory="farcast")
    opt = wc.ForecastSGD(model.parameters(), lr=0.05, momentum=0.9, forecaster=forecaster, window=5,
                         record_every=2, jump_every=10, horizon=4)
    engine = engine_of(opt)
    (_, bucket), = engine.buckets
    codec = forecaster._codecs[bucket]
    tok, ae = codec.tok, codec.ae
    assert tuple(bucket.history.shape) == (6, tok.num_tokens * 4)
    z0 = ae.encode(tok.tokenize(initial) / codec.token_scale(slice(None))[:, None], tok.positions)
    torch.testing.assert_close(bucket.history[5].view(-1, 4), z0, rtol=1e-5, atol=1e-5)
    scales = codec.layer_scale.clone()
    seen = {}
    opt.register_jump_hooks(before=lambda o, t: seen.setdefault("before", bucket.packed()))
    train(model, opt, 10)  # records at 2..10, jumps at 10 to step 14
    assert opt.num_jumps == 1 and torch.equal(codec.layer_scale, scales)  # scales fixed for the run
    c = forecaster.latent_coefficients(bucket.slot_steps, 14).float()
    assert c.shape == (6,) and not torch.allclose(c, torch.zeros(6))
    Z = bucket.history.view(6, tok.num_tokens, 4)
    newest = (bucket.head - 1) % bucket.window
    delta = ae.decode(torch.einsum("w,wkd->kd", c, Z), tok.positions) - ae.decode(Z[newest], tok.positions)
    scale = codec.token_scale(slice(None))
    expected = tok.detokenize(tok.tokenize(seen["before"]) + delta * scale[:, None], seen["before"].clone())
    torch.testing.assert_close(bucket.packed(), expected, rtol=1e-5, atol=1e-6)


def test_block_size_does_not_change_the_jump():
    """Encoding and decoding in blocks of 7 tokens gives the jump of one block of all tokens."""
    results = []
    for block in (7, 1 << 20):
        model = small_model()
        forecaster = LatentForecaster(tiny_ae(), block_tokens=block)
        opt = wc.ForecastSGD(model.parameters(), lr=0.05, momentum=0.9, forecaster=forecaster, window=3,
                             record_every=2, jump_every=6, horizon=4)
        train(model, opt, 6)
        assert opt.num_jumps == 1
        results.append([p.detach().clone() for p in model.parameters()])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError, match="trajectory must be"):
        LatentForecaster(tiny_ae(), trajectory="quadratic")
    with pytest.raises(ValueError, match="only used with trajectory='farcast'"):
        LatentForecaster(tiny_ae(), farcast="x.safetensors")
    with pytest.raises(ValueError, match="block_tokens"):
        LatentForecaster(tiny_ae(), block_tokens=0)
    model = small_model()
    with pytest.raises(ValueError, match="window is 2"):
        wc.ForecastSGD(model.parameters(), lr=0.1, forecaster=LatentForecaster(tiny_ae(), trajectory="farcast"),
                       window=2)


def test_farcast_trajectory_resumes_exactly():
    """The initial latents (a history row) and the run-wide scales come back with the optimizer's state_dict."""
    ae = tiny_ae()

    def make(model):
        return wc.ForecastSGD(model.parameters(), lr=0.05, momentum=0.9, window=5, record_every=2, jump_every=10,
                              horizon=4, forecaster=LatentForecaster(ae, trajectory="farcast"))

    m1 = small_model()
    o1 = make(m1)
    train(m1, o1, 12)
    buffer = io.BytesIO()
    torch.save(o1.state_dict(), buffer)
    buffer.seek(0)
    m2 = small_model(seed=5)  # other initial weights: the resumed run must not use its own
    m2.load_state_dict(m1.state_dict())
    o2 = make(m2)
    o2.load_state_dict(torch.load(buffer, weights_only=True))
    train(m1, o1, 10, start=12)
    train(m2, o2, 10, start=12)
    assert o1.num_jumps == o2.num_jumps == 2
    for p, q in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(p, q)
