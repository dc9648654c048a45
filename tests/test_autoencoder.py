"""The weight autoencoder: shapes, save/load (safetensors + JSON card), the shipped weights, training and CLI."""
import json

import pytest
import torch

import weightcast as wc

from weightcast.wsl import POSITION_FEATURES, WeightAutoencoder, load_autoencoder, save_autoencoder
from weightcast.wsl.autoencoder import DEFAULT_WEIGHTS


def test_shapes_and_decoder_position_term():
    torch.manual_seed(0)
    ae = WeightAutoencoder(token_size=12, latent=3, hidden=20)
    x, pos = torch.randn(7, 12), torch.rand(7, POSITION_FEATURES)
    z = ae.encode(x, pos)
    assert z.shape == (7, 3)
    assert ae.decode(z, pos).shape == (7, 12)
    torch.testing.assert_close(ae.decode_hidden(z, pos, ae.decoder_position_term(pos)), ae.decode_hidden(z, pos))
    # the first layer split (weights + precomputed position term) equals one Linear over [x, pos]
    full = torch.cat([ae.enc_w, ae.enc_pos], dim=1)
    torch.testing.assert_close(ae.encode(x, pos), ae.encode_hidden(torch.cat([x, pos], 1) @ full.t() + ae.enc_b))


def test_save_load_round_trip(tmp_path):
    ae = WeightAutoencoder(token_size=8, latent=2, hidden=5)
    path = tmp_path / "ae.safetensors"
    save_autoencoder(ae, path, {"note": "test"})
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["note"] == "test" and card["config"] == {"token_size": 8, "latent": 2, "hidden": 5}
    loaded = load_autoencoder(path)
    assert not loaded.training
    for (k, a), (_, b) in zip(ae.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k


def test_load_errors(tmp_path):
    from weightcast.weights_io import WeightFileError

    with pytest.raises(WeightFileError, match="ae train"):
        load_autoencoder(tmp_path / "missing.safetensors")
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "bare.safetensors"))
    with pytest.raises(WeightFileError, match="format"):
        load_autoencoder(tmp_path / "bare.safetensors")
    good = tmp_path / "ae.safetensors"
    save_autoencoder(WeightAutoencoder(token_size=8, latent=2, hidden=5), good, {})
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(good.read_bytes()[:-7])
    pickled = tmp_path / "pickle.safetensors"
    torch.save(WeightAutoencoder(token_size=8, latent=2, hidden=5).state_dict(), pickled)
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    for path in (cut, pickled, empty):
        with pytest.raises(WeightFileError, match=f"{path.name}.*truncated"):
            load_autoencoder(path)
    with pytest.raises(WeightFileError, match="holds 'farcast' weights, not 'latent-ae'"):
        load_autoencoder(wc.forecasters.io.default_path("farcast"))


def test_shipped_weights_and_card():
    assert DEFAULT_WEIGHTS.is_file(), "the package ships default autoencoder weights"
    assert DEFAULT_WEIGHTS.stat().st_size < 2 * 1024 * 1024
    card = json.loads(DEFAULT_WEIGHTS.with_suffix(".json").read_text())
    ae = load_autoencoder()
    assert card["config"] == ae.config()
    assert {"recon", "diff@1", "diff@5"} <= set(card["val"]["overall"])


@pytest.fixture(scope="module")
def quick_zoo(tmp_path_factory):
    from weightcast.zoo import build_zoo, quick_spec

    out = tmp_path_factory.mktemp("zoo")
    build_zoo(out, quick_spec()[:3], progress=False)
    return out


@pytest.mark.slow
def test_training_reduces_difference_error_and_cli(quick_zoo, tmp_path):
    from weightcast.cli import main
    from weightcast.wsl.autoencoder import _load_runs, evaluate, train_autoencoder

    torch.manual_seed(0)
    untrained = evaluate(WeightAutoencoder(16, 4, 32), _load_runs(quick_zoo, "val", 16, 0))
    ae, card = train_autoencoder(quick_zoo, token_size=16, latent=4, hidden=32, steps=150, progress=False)
    assert card["val"]["overall"]["diff@1"] < untrained["overall"]["diff@1"]
    out = tmp_path / "ae.safetensors"
    assert main(["ae", "train", "--zoo", str(quick_zoo), "--out", str(out), "--token-size", "16", "--latent", "4",
                 "--hidden", "16", "--steps", "3", "--no-progress"]) == 0
    assert load_autoencoder(out).config() == {"token_size": 16, "latent": 4, "hidden": 16}


def test_eval_cli_on_all_runs_of_a_zoo(quick_zoo, tmp_path):
    """`weightcast ae eval`: the errors of saved autoencoders on every run of a zoo (e.g. held-out runs)."""
    import json

    from weightcast.cli import main
    from weightcast.wsl.autoencoder import _load_runs, evaluate

    torch.manual_seed(0)
    ae = WeightAutoencoder(token_size=16, latent=4, hidden=16)
    path = tmp_path / "ae.safetensors"
    save_autoencoder(ae, path, {"note": "untrained"})
    out = tmp_path / "eval.json"
    assert main(["ae", "eval", str(path), "--zoo", str(quick_zoo), "--out", str(out)]) == 0
    result = json.loads(out.read_text())["autoencoders"]["ae.safetensors"]
    expected = evaluate(ae, _load_runs(quick_zoo, "train", 16, 0) + _load_runs(quick_zoo, "val", 16, 0))
    assert result["overall"] == pytest.approx(expected["overall"])
    assert set(result["groups"]) == {"digits-mlp"}  # the quick zoo's first three runs
    with pytest.raises(ValueError, match="split must be"):
        _load_runs(quick_zoo, "test", 16, 0)
