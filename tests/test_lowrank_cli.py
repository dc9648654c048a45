"""Bad input to ``weightcast lowrank train`` and ``wc.lowrank.KLS``: an argparse error or a one-line error
(exit status 1) before any training, never a traceback."""
import pytest
import torch
from torch import nn

from weightcast import lowrank as lr
from weightcast.cli import main
from weightcast.data import get_task
from weightcast.errors import InputError
from weightcast.lowrank.train import train

FAST = ["--epochs", "1", "--batch-size", "256", "--no-progress"]


def argparse_error(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        main(["lowrank", "train", *argv])
    assert exc.value.code == 2
    return capsys.readouterr().err


def input_error(argv, capsys) -> str:
    assert main(["lowrank", "train", *argv]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    return err


@pytest.mark.parametrize("argv, option", [
    (["--epochs", "0"], "--epochs"), (["--epochs", "-1"], "--epochs"), (["--batch-size", "0"], "--batch-size"),
    (["--model", "mlp", "--width", "0"], "--width"), (["--momentum", "2"], "--momentum"),
    (["--momentum", "1"], "--momentum"), (["--momentum", "-0.1"], "--momentum"), (["--lr", "0"], "--lr"),
    (["--seeds", "-1"], "--seeds"), (["--theta", "-0.1"], "--theta"), (["--task", "nope"], "--task"),
])
def test_bad_numbers_and_names_are_argparse_errors(argv, option, capsys, tmp_path):
    err = argparse_error([*argv, "--out", str(tmp_path / "out")], capsys)
    assert f"argument {option}" in err
    assert not (tmp_path / "out").exists()


def test_chars_task_is_refused_naming_the_supported_tasks(capsys):
    err = argparse_error(["--task", "chars", "--model", "mlp"], capsys)
    assert "'digits'" in err and "'mnist'" in err
    with pytest.raises(InputError, match="digits and mnist"):  # the library function too
        train(get_task("chars"), "mlp", epochs=1, progress=False)


def test_momentum_with_adamw_is_refused(capsys, tmp_path):
    err = input_error(["--task", "digits", "--model", "mlp", "--base", "adamw", "--momentum", "0.5",
                       "--out", str(tmp_path / "out"), *FAST], capsys)
    assert "--momentum applies to --base sgd only" in err
    assert not (tmp_path / "out").exists()


def test_lenet5_ref_on_digits_says_it_needs_mnist(capsys, tmp_path):
    err = input_error(["--task", "digits", "--out", str(tmp_path / "out"), *FAST], capsys)
    assert "lenet5-ref needs 28x28 MNIST images" in err and "--task mnist or --model mlp" in err
    assert not (tmp_path / "out").exists()


def test_batch_larger_than_the_training_set_is_refused(capsys, tmp_path):
    err = input_error(["--task", "digits", "--model", "mlp", "--out", str(tmp_path / "out"), "--epochs", "1",
                       "--batch-size", "100000", "--no-progress"], capsys)
    assert "exceeds the 1437 training examples" in err


def test_missing_mnist_directory_is_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("WEIGHTCAST_DATA", raising=False)
    err = input_error(["--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out"), *FAST], capsys)
    assert "MNIST" in err and "nowhere" in err
    err = input_error(["--out", str(tmp_path / "out"), *FAST], capsys)
    assert "--data-dir DIR" in err


def test_help_describes_every_option_with_its_default(capsys):
    with pytest.raises(SystemExit):
        main(["lowrank", "train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for text in ("passes over the training set (default: 20)", "learning rate (default: 0.05)",
                 "training batch size (default: 128)", "(--base sgd only) (default: 0.0)",
                 "random seeds, one run each (default: [0])"):
        assert text in out


def test_kls_number_arguments_of_the_wrong_type_are_type_errors():
    torch.manual_seed(0)
    model = lr.to_low_rank(nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)), rank=2)
    with pytest.raises(TypeError, match="theta must be a float .*str '0.1'"):
        lr.KLS(model, theta="0.1")
    with pytest.raises(TypeError, match="momentum must be a float"):
        lr.KLS(model, momentum="0.9")
    with pytest.raises(TypeError, match="theta"):
        lr.KLS(model, theta=None)
    lr.KLS(model, theta=1, momentum=0)  # ints are fine
