"""The one weight-file format (weightcast.weights_io): atomic writes, and every check of the loader."""
import json

import pytest
import torch
from safetensors.torch import save_file

from weightcast.weights_io import WeightFileError, card_path, check_out_path, load_weights, save_weights


def shapes(config):
    return {"w": (config["n"], 3), "b": (config["n"],)}


def test_round_trip_with_card(tmp_path):
    path = tmp_path / "m.safetensors"
    tensors = {"w": torch.randn(4, 3), "b": torch.randn(4)}
    save_weights(path, tensors, kind="toy", config={"n": 4}, card={"command": "make toy"})
    config, loaded = load_weights(path, "toy", shapes)
    assert config == {"n": 4} and loaded.keys() == tensors.keys()
    assert all(torch.equal(loaded[k], tensors[k]) for k in tensors)
    assert json.loads(card_path(path).read_text()) == {"command": "make toy"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.safetensors"]  # no temporary file left


def test_every_bad_file_names_its_path_and_the_repair(tmp_path):
    good = tmp_path / "good.safetensors"
    save_weights(good, {"w": torch.zeros(2, 3), "b": torch.zeros(2)}, kind="toy", config={"n": 2})
    raw = good.read_bytes()
    cases = {}
    cases["cut.safetensors"] = raw[:-5]
    cases["header.safetensors"] = raw[:20]
    cases["empty.safetensors"] = b""
    cases["text.safetensors"] = b"not a weight file at all"
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    torch.save({"w": torch.zeros(2, 3)}, tmp_path / "pickle.safetensors")
    for name in [*cases, "pickle.safetensors"]:
        with pytest.raises(WeightFileError, match=rf"{name}.*truncated.*`make toy`"):
            load_weights(tmp_path / name, "toy", shapes, remake="make toy")
    with pytest.raises(WeightFileError, match="missing.*make toy"):
        load_weights(tmp_path / "missing.safetensors", "toy", shapes, remake="make toy")
    with pytest.raises(WeightFileError, match="directory"):
        load_weights(tmp_path, "toy", shapes)
    with pytest.raises(WeightFileError, match="holds 'toy' weights, not 'other'"):
        load_weights(good, "other", shapes)
    save_file({"w": torch.zeros(2, 3)}, tmp_path / "foreign.safetensors")
    with pytest.raises(WeightFileError, match="format"):
        load_weights(tmp_path / "foreign.safetensors", "toy", shapes)
    save_weights(tmp_path / "shape.safetensors", {"w": torch.zeros(2, 4), "b": torch.zeros(2)}, kind="toy",
                 config={"n": 2})
    with pytest.raises(WeightFileError, match="shapes"):
        load_weights(tmp_path / "shape.safetensors", "toy", shapes)
    save_weights(tmp_path / "config.safetensors", {"w": torch.zeros(2, 3)}, kind="toy", config={"m": 2})
    with pytest.raises(WeightFileError, match="config"):
        load_weights(tmp_path / "config.safetensors", "toy", shapes)


def test_non_finite_weights_are_neither_written_nor_loaded(tmp_path):
    bad = {"w": torch.zeros(2, 3), "b": torch.tensor([0.0, float("nan")])}
    with pytest.raises(WeightFileError, match="non-finite"):
        save_weights(tmp_path / "nan.safetensors", bad, kind="toy", config={"n": 2})
    assert not any(tmp_path.iterdir())
    # a file written by other means (e.g. edited) is refused on load
    from safetensors.torch import save

    data = save(bad, metadata={"format": "weightcast-weights", "version": "1", "kind": "toy",
                               "config": json.dumps({"n": 2})})
    (tmp_path / "nan.safetensors").write_bytes(data)
    with pytest.raises(WeightFileError, match=r"nan.safetensors.*\['b'\].*non-finite"):
        load_weights(tmp_path / "nan.safetensors", "toy", shapes)


def test_output_paths_are_checked_before_any_work(tmp_path):
    with pytest.raises(WeightFileError, match="directory"):
        check_out_path(tmp_path)
    with pytest.raises(WeightFileError, match="must end in .safetensors"):
        check_out_path(tmp_path / "model.json")
    (tmp_path / "file").write_text("x")
    with pytest.raises(WeightFileError, match="is a file"):
        check_out_path(tmp_path / "file" / "m.safetensors")
    assert check_out_path(tmp_path / "new" / "m.safetensors") == tmp_path / "new" / "m.safetensors"


def test_files_of_the_earlier_forecaster_format_still_load(tmp_path):
    from safetensors.torch import save

    meta = {"format": "weightcast-forecaster", "version": "1", "kind": "toy", "config": json.dumps({"n": 1})}
    (tmp_path / "old.safetensors").write_bytes(save({"w": torch.ones(1, 3), "b": torch.ones(1)}, metadata=meta))
    config, tensors = load_weights(tmp_path / "old.safetensors", "toy", shapes)
    assert config == {"n": 1} and torch.equal(tensors["w"], torch.ones(1, 3))


def test_card_of_a_missing_file_says_the_file_is_missing(tmp_path):
    from weightcast.weights_io import read_card

    with pytest.raises(WeightFileError, match="does not exist"):
        read_card(tmp_path / "missing.safetensors")
    path = tmp_path / "m.safetensors"
    save_weights(path, {"w": torch.zeros(2, 3), "b": torch.zeros(2)}, kind="toy", config={"n": 2})  # no card
    with pytest.raises(WeightFileError, match="has no card"):
        read_card(path)
