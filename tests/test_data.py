"""Data loaders and tasks: digits, chars, MNIST from the shared data directory, and the errors on bad files."""
import gzip
import math
import struct

import pytest
import torch
import torch.nn.functional as F

from weightcast.data import find_mnist_dir, get_task, load_chars, load_digits, load_mnist, read_idx
from weightcast.errors import InputError

from helpers import SHARED_DATA, needs_mnist


class ConstantModel(torch.nn.Module):
    """Returns the same logits for every example; records the mode it was called in."""

    def __init__(self, logits):
        super().__init__()
        self.logits = torch.nn.Parameter(logits)
        self.modes = []

    def forward(self, x):
        self.modes.append(self.training)
        return self.logits.expand(*x.shape[: 2 if x.dtype == torch.long else 1], -1)


def test_digits_split_is_fixed_and_complete():
    a, b = load_digits(), load_digits()
    assert a.train_x.shape == (1437, 8, 8) and a.val_x.shape == (360, 8, 8) and a.train_x.dtype == torch.uint8
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert int(a.train_x.max()) == 16 and sorted(torch.cat([a.train_y, a.val_y]).unique().tolist()) == list(range(10))
    assert not torch.equal(load_digits(seed=1).val_y, a.val_y)


def test_digits_task_tensors_and_batches():
    task = get_task("digits")
    assert task.train_x.shape == (1437, 1, 8, 8) and task.train_x.dtype == torch.float32
    assert task.input_shape == (1, 8, 8) and task.num_classes == 10 and task.eval_size == 360
    assert abs(float(task.train_x.mean())) < 1e-5 and abs(float(task.train_x.std()) - 1) < 1e-4
    epoch = [next(it) for it in [task.batches(479, generator=3)] for _ in range(3)]  # 3 x 479 = 1437: one epoch
    xs, ys = torch.cat([x for x, _ in epoch]), torch.cat([y for _, y in epoch])
    assert torch.equal(ys.sort().values, task.train_y.sort().values)
    assert torch.equal(xs.flatten(1).sum(1).sort().values, task.train_x.flatten(1).sum(1).sort().values)
    first, again = next(task.batches(32, 7)), next(task.batches(32, 7))
    assert first[0].shape == (32, 1, 8, 8) and torch.equal(first[0], again[0])
    with pytest.raises(ValueError, match="batch_size"):
        next(task.batches(5000))


def test_classification_evaluate_matches_direct_computation():
    task = get_task("digits", eval_size=100)
    model = ConstantModel(torch.linspace(-1, 1, 10))
    model.train()
    result = task.evaluate(model, batch_size=30)
    y = task.val_y[:100]
    expected_loss = F.cross_entropy(model.logits.detach().expand(100, -1), y)
    assert result["loss"] == pytest.approx(float(expected_loss), rel=1e-6)
    assert result["acc"] == pytest.approx(float((y == 9).float().mean()))
    assert model.modes == [False] * 4 and model.training  # evaluated in eval mode, mode restored
    assert task.evaluate(model, limit=10, split="train")["acc"] == pytest.approx(
        float((task.train_y[:10] == 9).float().mean()))


def test_chars_corpus():
    corpus = load_chars()
    from pydoc_data.topics import topics

    text = "".join(topics[k] for k in sorted(topics))
    assert corpus.vocab == "".join(sorted(set(text)))
    assert len(corpus.train) + len(corpus.val) == len(text)
    assert len(corpus.val) == len(text) - int(len(text) * 0.9)
    assert corpus.decode(torch.cat([corpus.train, corpus.val])) == text
    assert torch.equal(corpus.encode("def f(x):"), torch.cat([corpus.train, corpus.val])[
        text.index("def f(x):"):text.index("def f(x):") + 9])


def test_chars_task_batches_and_evaluate():
    task = get_task("chars", block_size=16, eval_size=10)
    x, y = next(task.batches(8, generator=0))
    assert x.shape == y.shape == (8, 16) and x.dtype == torch.long
    assert torch.equal(x[:, 1:], y[:, :-1])
    vx, vy = task.eval_tensors("val", 10)
    assert torch.equal(vx.flatten(), task.val[:160]) and torch.equal(vy.flatten(), task.val[1:161])
    uniform = ConstantModel(torch.zeros(task.vocab_size))
    result = task.evaluate(uniform)
    assert result["loss"] == pytest.approx(math.log(task.vocab_size), rel=1e-6)
    assert result["acc"] == pytest.approx(float((vy == 0).float().mean()))
    assert task.model_kwargs() == {"vocab_size": task.vocab_size, "block_size": 16}


def test_unknown_task():
    with pytest.raises(KeyError, match="digits"):
        get_task("cifar10")
    with pytest.raises(InputError) as exc:   # the command line prints it as one line
        get_task("cifar10")
    assert str(exc.value) == "unknown task 'cifar10'; choose one of ['chars', 'digits', 'mnist']"


@needs_mnist
def test_mnist_from_shared_data():
    root = find_mnist_dir(SHARED_DATA)
    assert find_mnist_dir(root) == root  # the parent and the folder itself both work
    data = load_mnist(SHARED_DATA)
    assert data.train_x.shape == (60000, 28, 28) and data.val_x.shape == (10000, 28, 28)
    assert torch.bincount(data.train_y).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert float(data.train_x.float().mean() / 255) == pytest.approx(0.1307, abs=1e-4)
    task = get_task("mnist", SHARED_DATA, eval_size=500)
    assert task.train_x.shape == (60000, 1, 28, 28) and task.eval_size == 500


@needs_mnist
def test_mnist_from_environment(monkeypatch):
    monkeypatch.setenv("WEIGHTCAST_DATA", str(SHARED_DATA))
    assert load_mnist().val_y.shape == (10000,)


def test_mnist_without_a_directory(monkeypatch):
    monkeypatch.delenv("WEIGHTCAST_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="WEIGHTCAST_DATA"):
        load_mnist()


def _idx(path, magic, dims, body):
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(f">{1 + len(dims)}I", magic, *dims) + bytes(body))


def test_read_idx_checks(tmp_path):
    good = tmp_path / "good.gz"
    _idx(good, 2051, (2, 3, 3), range(18))
    assert torch.equal(read_idx(good, 2051, (2, 3, 3)), torch.arange(18, dtype=torch.uint8).view(2, 3, 3))
    with pytest.raises(ValueError, match="magic number 2051; expected .* magic 2049"):
        read_idx(good, 2049, (2, 3, 3))
    with pytest.raises(ValueError, match="shape 2x3x3; expected .* shape 2x3x4"):
        read_idx(good, 2051, (2, 3, 4))
    short = tmp_path / "short.gz"
    _idx(short, 2051, (2, 3, 3), range(17))
    with pytest.raises(ValueError, match="short.gz holds 17 data bytes"):
        read_idx(short, 2051, (2, 3, 3))
    garbage = tmp_path / "garbage.gz"
    garbage.write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match="garbage.gz is corrupt"):
        read_idx(garbage, 2051, (2, 3, 3))


def test_mnist_missing_and_corrupt_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte.gz; expected .*60000x28x28"):
        load_mnist(tmp_path)
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"\0\0\x08\x03" + bytes(12)))
    with pytest.raises(ValueError, match=r"mnist/train-images-idx3-ubyte.gz has shape 0x0x0; expected"):
        load_mnist(tmp_path)  # the parent of mnist/ is accepted
