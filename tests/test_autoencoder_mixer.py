"""The weight autoencoder's transformer mixer: windows of tokens, padding, config and save/load, training, and the
latent forecaster on top of it."""
import json

import pytest
import torch
from torch import nn

import weightcast as wc
from weightcast.wsl import POSITION_FEATURES, WeightAutoencoder, load_autoencoder, save_autoencoder
from weightcast.wsl.autoencoder import _sample_tokens


def small_transformer(seed=0, window=16):
    torch.manual_seed(seed)
    return WeightAutoencoder(token_size=16, latent=4, hidden=24, mixer="transformer", window=window).eval()


def tokens(K, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(K, 16, generator=g), torch.rand(K, POSITION_FEATURES, generator=g)


def test_shapes_when_tokens_do_not_fill_the_last_window():
    ae = small_transformer()
    assert ae.token_block_multiple == 16 and WeightAutoencoder().token_block_multiple == 1
    x, pos = tokens(37)
    z = ae.encode(x, pos)
    assert z.shape == (37, 4) and ae.decode(z, pos).shape == (37, 16)
    assert ae.decode_hidden(z, pos).shape == (37, 24)
    torch.testing.assert_close(ae.decode_hidden(z, pos, ae.decoder_position_term(pos)), ae.decode_hidden(z, pos))
    assert bool(torch.isfinite(ae.decode(z, pos)).all())


def test_padding_does_not_change_real_tokens():
    """37 tokens = two full windows + 5: the first 32 outputs are those of the 32 tokens alone, the last 5 those
    of a model of 5 tokens (the padding rows are masked out of attention)."""
    ae = small_transformer()
    x, pos = tokens(37)
    with torch.no_grad():
        z37, z32, z5 = ae.encode(x, pos), ae.encode(x[:32], pos[:32]), ae.encode(x[32:], pos[32:])
        torch.testing.assert_close(z37[:32], z32, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(z37[32:], z5, rtol=1e-6, atol=1e-6)
        d37, d32 = ae.decode_hidden(z37, pos), ae.decode_hidden(z37[:32], pos[:32])
        torch.testing.assert_close(d37[:32], d32, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(d37[32:], ae.decode_hidden(z37[32:], pos[32:]), rtol=1e-6, atol=1e-6)


def test_tokens_mix_within_windows_only():
    ae = small_transformer(window=4)
    x, pos = tokens(12)
    y = x.clone()
    y[5] += 1.0  # window 1 (tokens 4..7)
    with torch.no_grad():
        changed = (ae.encode(x, pos) - ae.encode(y, pos)).abs().amax(1) > 0
    assert changed.tolist() == [False] * 4 + [True] * 4 + [False] * 4


def test_mlp_is_per_token():
    torch.manual_seed(0)
    ae = WeightAutoencoder(token_size=16, latent=4, hidden=24)
    x, pos = tokens(37)
    with torch.no_grad():
        torch.testing.assert_close(ae.encode(x, pos)[10:13], ae.encode(x[10:13], pos[10:13]), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kwargs,match", [({"mixer": "attention"}, "mixer must be one of"),
                                          ({"window": 0}, "window must be >= 1"),
                                          ({"mixer": "transformer", "heads": 5}, "multiple of heads")])
def test_bad_mixer_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        WeightAutoencoder(token_size=16, latent=4, hidden=24, **kwargs)


def test_save_load_round_trip_keeps_config_and_outputs(tmp_path):
    ae = small_transformer(window=8)
    path = tmp_path / "ae.safetensors"
    save_autoencoder(ae, path, {"note": "test"})
    config = {"token_size": 16, "latent": 4, "hidden": 24, "mixer": "transformer", "window": 8, "heads": 4}
    assert json.loads(path.with_suffix(".json").read_text())["config"] == config
    loaded = load_autoencoder(path)
    assert loaded.config() == config and loaded.token_block_multiple == 8
    x, pos = tokens(21)
    with torch.no_grad():
        assert torch.equal(loaded.decode(loaded.encode(x, pos), pos), ae.decode(ae.encode(x, pos), pos))


def test_files_without_mixer_load_as_mlp(tmp_path):
    """A config of the three original keys (files saved before the mixer option) is the MLP."""
    from weightcast.weights_io import save_weights

    torch.manual_seed(0)
    ae = WeightAutoencoder(token_size=16, latent=4, hidden=24)
    path = tmp_path / "old.safetensors"
    save_weights(path, ae.state_dict(), kind="latent-ae", config={"token_size": 16, "latent": 4, "hidden": 24})
    loaded = load_autoencoder(path)
    assert loaded.mixer == "mlp" and loaded.token_block_multiple == 1
    assert loaded.config() == {"token_size": 16, "latent": 4, "hidden": 24}


def test_window_sampling_gives_whole_windows_in_order():
    gen = torch.Generator().manual_seed(0)
    sel = _sample_tokens(37, 32, 16, gen)
    starts = sel[::16]
    assert bool((starts % 16 == 0).all()) and bool((starts[1:] > starts[:-1]).all())
    assert sel.tolist() == [t for s in starts.tolist() for t in range(s, min(s + 16, 37))]
    assert _sample_tokens(37, 8, 1, torch.Generator().manual_seed(0)).tolist() == \
        torch.randperm(37, generator=torch.Generator().manual_seed(0))[:8].tolist()


def test_a_few_steps_reduce_the_loss():
    ae = small_transformer().train()
    x, pos = tokens(64)
    opt = torch.optim.Adam(ae.parameters(), lr=3e-3)

    def loss():
        return ((ae.decode(ae.encode(x, pos), pos) - x) ** 2).mean()

    first = loss().item()
    for _ in range(30):
        opt.zero_grad()
        loss().backward()
        opt.step()
    assert loss().item() < 0.9 * first


def test_latent_forecaster_with_a_transformer_autoencoder(tmp_path):
    path = tmp_path / "ae.safetensors"
    save_autoencoder(small_transformer(window=4), path, {})
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
    forecaster = wc.forecasters.get("latent", autoencoder=str(path))
    assert forecaster.autoencoder.mixer == "transformer"
    opt = wc.ForecastSGD(model.parameters(), lr=0.05, momentum=0.9, forecaster=forecaster, window=3,
                         record_every=1, jump_every=3, horizon=2)
    for t in range(9):
        g = torch.Generator().manual_seed(t)
        for p in model.parameters():
            p.grad = 0.5 * p.detach() + 0.05 * torch.randn(p.shape, generator=g)
        opt.step()
    assert opt.num_jumps >= 1
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())
