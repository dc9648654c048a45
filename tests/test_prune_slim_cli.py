"""User-input handling of ``weightcast prune apply`` and ``weightcast slim finetune/study``: bad input is one
line (InputError, exit 1) before any work, and ``prune apply``'s output loads back."""
import json
import re

import pytest
import torch
from safetensors.torch import save_file

from weightcast.cli import main
from weightcast.data import get_task
from weightcast.models import get
from weightcast.prune import BiasFreeMLP, load_pruned


def error_of(argv, capsys) -> str:
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("weightcast: error:") and "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


@pytest.fixture
def state(tmp_path):
    model = BiasFreeMLP((8, 8), 10, widths=(12,))
    path = tmp_path / "mlp.pt"
    torch.save(model.state_dict(), path)
    return path


def apply_args(state, out, *extra):
    return ["prune", "apply", "--model", "mlp_nobias", "--model-kwargs", '{"widths": [12]}', "--task", "digits",
            "--state", str(state), "--sparsity", "0.5", "--out", str(out), *extra]


@pytest.mark.parametrize("change, match", [
    ({"--state": "missing.pt"}, "--state .*no such file"),
    ({"--model-kwargs": "{widths:[32]}"}, "--model-kwargs .* is not JSON"),
    ({"--model": "mlpx"}, "--model 'mlpx'.*unknown model"),
    ({"--model-kwargs": '{"widths": [32]}'}, "does not fit --model mlp_nobias"),
    ({"--out": "/nonexist/dir/p.pt"}, "--out .*does not exist"),
    ({"--task": "cifar"}, r"unknown task 'cifar'; choose one of \['chars', 'digits', 'mnist'\]"),
    ({"--method": "woodfisher", "--scope": "layer"}, "'woodfisher' .* has no scope='layer'"),
])
def test_prune_apply_bad_input_is_one_line(state, tmp_path, capsys, change, match):
    argv = apply_args(state, tmp_path / "p.pt")
    for flag, value in change.items():
        if flag not in argv:
            argv += [flag, value]
        argv[argv.index(flag) + 1] = str(tmp_path / value) if flag == "--state" else value
    assert re.search(match, error_of(argv, capsys))


def test_prune_apply_says_what_to_do_with_a_state_it_cannot_use(state, tmp_path, capsys):
    """A whole pickled model, a JSON file, a wrapped checkpoint and a folder as --state gave torch's long text (with
    terminal escapes, suggesting weights_only=False), "no such file", or "pass the model arguments" for keys that
    are no model arguments' fault; a long shape mismatch was cut without a mark."""
    model = BiasFreeMLP((8, 8), 10, widths=(12,))
    cases = {"whole.pt": (lambda f: torch.save(model, f), r"holds Python objects besides tensors \(a whole model"),
             "card.json": (lambda f: f.write_text('{"dense_acc": 0.9}'), r"is not a file torch.save wrote"),
             "checkpoint.pt": (lambda f: torch.save({"model": model.state_dict(), "epoch": 3}, f),
                               r"none of its keys \(epoch, model\) is a tensor of the model \(layers.0.weight, "
                               r".*wraps the state_dict .*save the state_dict itself")}
    for name, (write, match) in cases.items():
        write(tmp_path / name)
        err = error_of(apply_args(tmp_path / name, tmp_path / "p.pt"), capsys)
        assert re.search(match, err) and "\x1b" not in err and "weights_only" not in err, err
    wrapped = {"module." + k: v for k, v in model.state_dict().items()}
    for name, bad, match in (("dp.pt", wrapped, r"its keys carry the prefix 'module.' \(a wrapped model's"),
                             ("step.pt", {**model.state_dict(), "step": torch.tensor(3)},
                              r"it has keys the model lacks \(step\); pass the --model and --model-kwargs it was "
                              r"trained with"),
                             ("short.pt", dict(list(model.state_dict().items())[:1]),
                              r"it lacks the model's keys \(layers.2.weight\)")):
        torch.save(bad, tmp_path / name)
        assert re.search(match, error_of(apply_args(tmp_path / name, tmp_path / "p.pt"), capsys))
    err = error_of(apply_args(tmp_path, tmp_path / "p.pt"), capsys)
    assert re.search(r"--state .* is a directory; pass the state_dict's file", err)
    torch.save(BiasFreeMLP((8, 8), 10, widths=(64,)).state_dict(), tmp_path / "wide.pt")   # the same keys
    err = error_of(apply_args(tmp_path / "wide.pt", tmp_path / "p.pt"), capsys)
    assert re.search(r"\.\.\.\); pass the --model-kwargs and --task it was trained with$", err), err


def test_prune_apply_reports_its_calibration_examples_and_sets_threads_only_when_asked(state, tmp_path, capsys,
                                                                                      monkeypatch):
    threads = torch.get_num_threads()
    monkeypatch.setattr(torch, "set_num_threads", lambda n: pytest.fail("threads set without --threads"))
    assert main(apply_args(state, tmp_path / "a.pt")) == 0
    assert json.loads(capsys.readouterr().out)["calibration_examples"] is None   # magnitude reads no data
    monkeypatch.setattr(torch, "set_num_threads", lambda n: set_to.append(n))
    set_to = []
    assert main(apply_args(state, tmp_path / "b.pt", "--method", "obs", "--calibration", "100000", "--threads",
                           str(threads))) == 0
    assert set_to == [threads]
    used = json.loads(capsys.readouterr().out)["calibration_examples"]
    assert used == len(get_task("digits").train_y) < 100000


def test_prune_apply_says_what_the_hypernetwork_pruned_by(state, tmp_path, capsys):
    # an untrained digits MLP fits no input prior: the learned scores at the shipped gate's strengths
    net_digest = {"network_sha256": re.compile(r"^[0-9a-f]{16}$")}
    for s, scope, expected in (("0.5", "global", {"strength": 0.0}), ("0.7", "global", {"strength": 0.75}),
                               ("0.7", "layer", {"strength": 0.75, "scope": "layer"})):
        out = tmp_path / f"h{s}{scope}.pt"
        assert main(apply_args(state, out, "--method", "hypernet", "--sparsity", s, "--scope", scope)) == 0
        said = json.loads(capsys.readouterr().out)["hypernet_decision"]
        assert {k: v for k, v in said.items() if k != "network_sha256"} == expected
        assert ("network_sha256" in said) == (expected["strength"] > 0)
        assert all(net_digest["network_sha256"].match(said[k]) for k in said if k == "network_sha256")
        pruned = torch.load(out)   # the scores change no weight: no woodfisher_prior, no update
        assert torch.equal(pruned["layers.0.weight_orig"], torch.load(state)["layers.0.weight"])


@pytest.mark.parametrize("command", [["prune", "train"], ["prune", "prior"], ["prune", "zoo"], ["prune", "apply"],
                                     ["slim", "study"], ["slim", "finetune"]])
def test_threads_must_be_positive(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*command, "--threads", "0"])
    assert exc.value.code == 2 and "--threads: 0 is out of range: pass an integer >= 1" in capsys.readouterr().err


def test_prune_apply_checks_out_before_any_work(state, capsys, monkeypatch):
    import weightcast.prune.api as api

    monkeypatch.setattr(api, "prune", lambda *a, **k: pytest.fail("pruned before checking --out"))
    error_of(apply_args(state, "/nonexist/dir/p.pt"), capsys)


def test_prune_apply_output_loads_back(state, tmp_path, capsys):
    masked, plain = tmp_path / "masked.pt", tmp_path / "plain.pt"
    assert main(apply_args(state, masked)) == 0
    assert json.loads(capsys.readouterr().out)["permanent"] is False
    saved = torch.load(masked)
    assert any(k.endswith("weight_mask") for k in saved)
    load_pruned(BiasFreeMLP((8, 8), 10, widths=(12,)), saved)
    # its own output is accepted as --state; --permanent writes a plain state_dict
    assert main(apply_args(masked, plain, "--permanent", "--sparsity", "0.7")) == 0
    report = json.loads(capsys.readouterr().out)
    model = BiasFreeMLP((8, 8), 10, widths=(12,))
    model.load_state_dict(torch.load(plain))
    assert report["permanent"] and abs(report["sparsity"] - 0.7) < 0.01
    assert float((model.layers[0].weight == 0).float().mean()) > 0.5


def test_prune_apply_random_is_reproducible_and_reports_the_accuracy_before(state, tmp_path, capsys):
    """Random masks were unseeded (two runs differed); the input's accuracy was reported as "acc_dense" even for
    an input already pruned."""
    outs, reports = [tmp_path / "a.pt", tmp_path / "b.pt", tmp_path / "c.pt"], []
    for out, seed in zip(outs, ["0", "0", "1"]):
        assert main(apply_args(state, out, "--method", "random", "--seed", seed)) == 0
        reports.append(json.loads(capsys.readouterr().out))
    a, b, c = (torch.load(out) for out in outs)
    assert all(torch.equal(a[k], b[k]) for k in a) and not all(torch.equal(a[k], c[k]) for k in a)
    assert main(apply_args(outs[0], tmp_path / "d.pt", "--sparsity", "0.8")) == 0
    assert json.loads(capsys.readouterr().out)["acc_before"] == reports[0]["acc_pruned"]


def test_prune_apply_prunes_a_pruned_state_further(state, tmp_path, capsys):
    first, second = tmp_path / "first.pt", tmp_path / "second.pt"
    assert main(apply_args(state, first, "--method", "random")) == 0
    capsys.readouterr()
    assert main(apply_args(first, second, "--sparsity", "0.8")) == 0   # magnitude over the remaining weights
    before, after = torch.load(first), torch.load(second)
    masks = {k: v.bool() for k, v in after.items() if k.endswith("weight_mask")}
    assert sum(int((~m).sum()) for m in masks.values()) == round(0.8 * sum(m.numel() for m in masks.values()))
    assert all(not bool((m & ~before[k].bool()).any()) for k, m in masks.items())   # pruned weights stay pruned
    err = error_of(apply_args(second, tmp_path / "third.pt", "--sparsity", "0.5"), capsys)
    assert "already has" in err and re.search(r"ask for a sparsity of at least 0\.\d+ \(\d+ of \d+\)", err)


def test_prune_apply_help_lists_methods_and_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["prune", "apply", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for text in ("{random,magnitude,lamp,hypernet,obs,woodfisher,chita}", "(default: magnitude)", "(default: 1024)",
                 "fraction of the prunable weights removed", "weight_mask", "load_pruned", "--permanent"):
        assert text in out, text


def finetune_args(tmp_path, weights, *extra):
    return ["slim", "finetune", "--model", "lenet5", "--task", "digits", "--weights", str(weights),
            "--out", str(tmp_path / "slim.safetensors"), "--steps", "1", *extra]


@pytest.mark.parametrize("flag, value, match", [("--hypernet", "missing.safetensors",
                                                 "no mask hypernetwork file at missing.safetensors"),
                                                ("--out", "/nonexist/dir/h.safetensors", "--out .*does not exist")])
def test_prune_prior_bad_input_is_one_line(tmp_path, capsys, flag, value, match):
    out = [] if flag == "--out" else ["--out", str(tmp_path / "h.safetensors")]
    assert re.search(match, error_of(["prune", "prior", flag, value, *out], capsys))


@pytest.mark.parametrize("flag, value, match", [("--samples", "0", "--samples: 0 is out of range"),
                                                ("--block-size", "0", "'full' or a positive integer, got '0'"),
                                                ("--draws", "1.5", "--draws: .1.5. is not an integer"),
                                                ("--rel-damp", "-1", "--rel-damp: -1 is out of range")])
def test_prune_prior_calibration_options_are_checked_and_show_their_defaults(tmp_path, capsys, flag, value, match):
    with pytest.raises(SystemExit) as exc:
        main(["prune", "prior", "--out", str(tmp_path / "h.safetensors"), flag, value])
    assert exc.value.code == 2 and re.search(match, capsys.readouterr().err)
    with pytest.raises(SystemExit):
        main(["prune", "prior", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for text in ("prior samples WoodFisher reads (default 8192)", "weights per block (default 2048)",
                 "(default 1)", "stages (default 8)", "relative damping (default 0.001)"):
        assert text in out, text


@pytest.mark.parametrize("command", ["train", "gate"])
@pytest.mark.parametrize("value", ["0", "1", "x"])
def test_prune_shrinks_must_be_fractions(tmp_path, capsys, command, value):
    with pytest.raises(SystemExit) as exc:
        main(["prune", command, "--out", str(tmp_path / "h.safetensors"), "--shrinks", "0.5", value])
    assert exc.value.code == 2 and re.search(r"--shrinks: .*(out of range: pass a fraction in \(0, 1\)|is not a "
                                             r"number)", capsys.readouterr().err)


@pytest.mark.parametrize("command", ["train", "prior", "gate"])
def test_prune_train_and_prior_need_an_explicit_out(tmp_path, capsys, command, monkeypatch):
    """Without --out they wrote over the shipped hypernetwork (train: with a network without its input priors);
    train --out <a folder> failed only after training, losing it."""
    from weightcast.prune import hypernet

    with pytest.raises(SystemExit) as exc:
        main(["prune", command, "--zoo", str(tmp_path)])
    assert exc.value.code == 2 and "required: --out" in capsys.readouterr().err
    monkeypatch.setattr(hypernet, "train", lambda *a, **k: pytest.fail("trained before checking --out"))
    assert re.search(r"--out .* is a directory", error_of(["prune", command, "--zoo", str(tmp_path), "--out",
                                                          str(tmp_path)], capsys))


@pytest.mark.parametrize("command", ["train", "prior", "gate"])
def test_prune_commands_name_a_missing_zoo_in_one_line(tmp_path, capsys, command, monkeypatch):
    err = error_of(["prune", command, "--zoo", str(tmp_path), "--data-dir", str(tmp_path), "--out",
                    str(tmp_path / "h.safetensors")], capsys)
    advice = re.search(r"lacks \d+ of its runs .*build them with `weightcast (prune zoo [^`]*)`", err).group(1)
    assert f"--zoo {tmp_path} " in advice
    # the advice is a command line `weightcast prune zoo` takes (its work is not run here)
    import weightcast.prune.zoo as zoo
    monkeypatch.setattr(zoo, "build", lambda out, *a, **k: {"runs": []})
    assert main(advice.replace("DATA", str(tmp_path)).split()) == 0


@pytest.mark.parametrize("content", [b"x", "no config", "damaged priors"])
def test_prune_prior_refuses_a_file_that_is_not_a_hypernetwork_and_rewrites_damaged_priors(tmp_path, capsys, content):
    from safetensors import safe_open
    from safetensors.torch import save_file

    from weightcast.prune import hypernet

    path = tmp_path / "bad.safetensors"
    if content == "no config":
        save_file({"x": torch.zeros(2)}, str(path))
    elif content == "damaged priors":
        with safe_open(str(hypernet.DEFAULT_FILE), "pt") as f:
            meta = {**f.metadata(), "priors": "{not json"}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        save_file(tensors, str(path), metadata=meta)
    else:
        path.write_bytes(content)
    err = error_of(["prune", "prior", "--hypernet", str(path), "--zoo", str(tmp_path), "--out",
                    str(tmp_path / "h.safetensors")], capsys)
    if content == "damaged priors":   # it writes new priors: the network is read and it goes on (to the zoo here)
        assert "lacks" in err and "prune zoo" in err and "damaged" not in err
    else:
        assert re.search(f"{path} is not a mask hypernetwork file", err)


def test_missing_data_is_one_line(state, tmp_path, capsys):
    argv = apply_args(state, tmp_path / "p.pt", "--data-dir", str(tmp_path))
    argv[argv.index("--task") + 1] = "mnist"
    assert re.search(r"MNIST file not found: .*train-images-idx3-ubyte.gz", error_of(argv, capsys))


def test_slim_finetune_bad_input_is_one_line(tmp_path, capsys):
    model = get("lenet5", **get_task("digits").model_kwargs())
    pt = tmp_path / "pre.pt"
    torch.save(model.state_dict(), pt)
    argv = finetune_args(tmp_path, pt)
    argv[argv.index("--model") + 1] = "gpt"
    assert "choose one of ['lenet5', 'mlp', 'resnet18']" in error_of(argv, capsys)
    assert "no such file" in error_of(finetune_args(tmp_path, tmp_path / "missing.safetensors"), capsys)
    err = error_of(finetune_args(tmp_path, pt), capsys)
    assert "expected a .safetensors file written by safetensors.torch.save_file" in err and "save_file(" in err
    weights = tmp_path / "pre.safetensors"
    save_file(model.state_dict(), str(weights))
    other = tmp_path / "mlp.safetensors"   # the same diagnosis as prune apply's (cli_common.state_misfit)
    save_file(BiasFreeMLP((8, 8), 10, widths=(12,)).state_dict(), str(other))
    err = error_of(finetune_args(tmp_path, other), capsys)
    assert re.search(r"--weights .* does not fit --model lenet5 .*: none of its keys \(layers.0.weight, .*\) is a "
                     r"tensor of the model .*else pass the --model it was trained as", err)
    for widths, match in ((["0.5"], r"widths must include 1.0 .*got \[0.5\]"),
                          (["1.5", "1.0"], r"widths must be fractions of the full width in \(0, 1\]")):
        argv = finetune_args(tmp_path, weights, "--widths", *widths)
        assert re.search(match, error_of(argv, capsys))


def test_slim_help_and_study_out_required(capsys):
    with pytest.raises(SystemExit):
        main(["slim", "finetune", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for text in ("fractions of the full width", "(default: 200)", "SGD steps", "learning rate", "(default: 0.01)",
                 "training and evaluation data"):
        assert text in out, text
    with pytest.raises(SystemExit) as exc:
        main(["slim", "study", "--quick"])
    assert exc.value.code == 2 and "--out" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["slim", "study", "--help"])
    assert "benchmarks/results/slim" in " ".join(capsys.readouterr().out.split())


def test_api_refuses_strings():
    from weightcast import prune, slim

    model = BiasFreeMLP((8, 8), 10, widths=(12,))
    with pytest.raises(TypeError, match="sparsity must be a float.*str '0.5'"):
        prune.prune(model, "0.5")
    with pytest.raises(TypeError, match="width must be a float"):
        slim.set_width(slim.make_slimmable(get("mlp", **get_task("digits").model_kwargs()), (0.5, 1.0)), "0.5")
