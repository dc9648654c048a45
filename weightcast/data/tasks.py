"""Tasks: a dataset held in memory as tensors, with batches, a loss and a fast evaluation, behind one interface.

``get_task(name)`` with ``name`` in :data:`TASKS`:

* ``"digits"``: scikit-learn's 8x8 digits, 1437 train / 360 validation images, input (1, 8, 8) float32
  (pixels / 16, standardised with the train mean and std), 10 classes. Validation: all 360 images.
* ``"mnist"``: MNIST from ``data_dir`` or ``$WEIGHTCAST_DATA``, 60000 train / 10000 validation (the test set),
  input (1, 28, 28) float32 standardised with the usual mean 0.1307 and std 0.3081, 10 classes. Validation:
  all 10000 images by default (``eval_size`` to shorten it).
* ``"chars"``: next-character prediction on the ``pydoc_data.topics`` corpus; inputs (block_size,) int64 ids,
  targets the ids shifted by one. Validation: the first ``eval_size`` (default 256) non-overlapping windows
  of the validation text, 256 x 64 = 16384 characters.

Batches are drawn from tensors already on ``device``: no per-sample Python, no DataLoader.
"""
from __future__ import annotations

import os
from typing import Callable, Iterator

import torch
import torch.nn.functional as F

from ..errors import UnknownNameError
from .chars import Corpus, load_chars
from .digits import load_digits
from .mnist import load_mnist
from .splits import Splits

Batch = tuple[torch.Tensor, torch.Tensor]

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


def _as_generator(generator: torch.Generator | int | None) -> torch.Generator | None:
    """An int is a seed for a fresh CPU generator; None means torch's global generator."""
    if isinstance(generator, int):
        return torch.Generator().manual_seed(generator)
    return generator


class Task:
    """Interface shared by all tasks.

    Attributes: ``name``; ``input_shape`` (one example, without the batch dimension); ``num_classes`` (for the
    char task, the vocabulary size); ``eval_size`` (examples used by :meth:`evaluate` by default); ``device``.
    """

    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    eval_size: int
    device: torch.device

    def batches(self, batch_size: int, generator: torch.Generator | int | None = None) -> Iterator[Batch]:
        """Endless iterator of training batches ``(x, y)`` on ``self.device``; ``generator`` (or a seed) fixes the
        order, None uses torch's global generator."""
        raise NotImplementedError

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy (float32 scalar) of a model output for a batch from :meth:`batches`."""
        raise NotImplementedError

    def make_loss(self) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """The loss as a plain function ``loss(output, target)``."""
        return self.loss

    def eval_tensors(self, split: str, limit: int) -> Batch:
        """The fixed evaluation inputs and targets: the first ``limit`` examples of ``split``."""
        raise NotImplementedError

    def model_kwargs(self) -> dict:
        """The keyword arguments a model of :mod:`weightcast.models` needs for this task."""
        raise NotImplementedError

    def info(self) -> dict:
        """A JSON-able description (sizes, shapes; what a manifest records)."""
        raise NotImplementedError

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, limit: int | None = None, split: str = "val",
                 batch_size: int = 1000) -> dict:
        """Mean loss and accuracy (fraction correct, per character for the char task) of ``model`` on the first
        ``limit`` (default ``self.eval_size``) examples of ``split`` ("val" or "train"), in batches, without
        gradients, in eval mode (the model's mode is restored). Returns ``{"loss": float, "acc": float}``."""
        x, y = self.eval_tensors(split, self.eval_size if limit is None else limit)
        was_training = model.training
        model.eval()
        total_loss, correct, count = 0.0, 0, 0
        try:
            for i in range(0, len(x), batch_size):
                out = model(x[i:i + batch_size])
                target = y[i:i + batch_size]
                total_loss += float(self.loss(out, target)) * target.numel()
                correct += int((out.argmax(-1) == target).sum())
                count += target.numel()
        finally:
            model.train(was_training)
        return {"loss": total_loss / count, "acc": correct / count}


class ClassificationTask(Task):
    """Image classification on float32 inputs (N, C, H, W) and int64 labels (N,), all in memory."""

    def __init__(self, name: str, data: Splits, num_classes: int, eval_size: int | None = None,
                 device: str | torch.device = "cpu"):
        self.name, self.num_classes, self.device = name, num_classes, torch.device(device)
        self.train_x, self.train_y, self.val_x, self.val_y = (t.to(self.device) for t in data)
        self.input_shape = tuple(self.train_x.shape[1:])
        self.eval_size = len(self.val_y) if eval_size is None else min(eval_size, len(self.val_y))

    def batches(self, batch_size, generator=None):
        n = len(self.train_y)
        if not 0 < batch_size <= n:
            raise ValueError(f"batch_size must be in 1..{n} for task {self.name!r}, got {batch_size}")
        generator = _as_generator(generator)
        while True:  # one epoch per pass; the incomplete last batch is dropped so every batch has batch_size
            perm = torch.randperm(n, generator=generator).to(self.device)
            for i in range(0, n - batch_size + 1, batch_size):
                idx = perm[i:i + batch_size]
                yield self.train_x[idx], self.train_y[idx]

    def loss(self, output, target):
        return F.cross_entropy(output, target)

    def eval_tensors(self, split, limit):
        x, y = {"val": (self.val_x, self.val_y), "train": (self.train_x, self.train_y)}[split]
        return x[:limit], y[:limit]

    def model_kwargs(self):
        return {"in_shape": self.input_shape, "num_classes": self.num_classes}

    def info(self):
        return {"name": self.name, "input_shape": list(self.input_shape), "num_classes": self.num_classes,
                "train_size": len(self.train_y), "val_size": len(self.val_y), "eval_size": self.eval_size}


class CharTask(Task):
    """Next-character prediction: inputs (B, block_size) int64 ids, outputs (B, block_size, vocab) logits."""

    def __init__(self, corpus: Corpus, block_size: int = 64, eval_size: int | None = 256,
                 device: str | torch.device = "cpu"):
        self.name, self.corpus, self.device = "chars", corpus, torch.device(device)
        self.block_size = block_size
        self.train = corpus.train.to(self.device)
        self.val = corpus.val.to(self.device)
        self.input_shape = (block_size,)
        self.num_classes = self.vocab_size = len(corpus.vocab)
        windows = (len(self.val) - 1) // block_size
        self.eval_size = windows if eval_size is None else min(eval_size, windows)
        self._offsets = torch.arange(block_size + 1, device=self.device)

    def batches(self, batch_size, generator=None):
        generator = _as_generator(generator)
        top = len(self.train) - self.block_size  # a window and its shifted target fit below this start
        while True:
            starts = torch.randint(0, top, (batch_size,), generator=generator).to(self.device)
            chunk = self.train[starts[:, None] + self._offsets]
            yield chunk[:, :-1], chunk[:, 1:]

    def loss(self, output, target):
        return F.cross_entropy(output.flatten(0, 1), target.flatten())

    def eval_tensors(self, split, limit):
        text = {"val": self.val, "train": self.train}[split]
        limit = min(limit, (len(text) - 1) // self.block_size)
        starts = torch.arange(limit, device=self.device) * self.block_size
        chunk = text[starts[:, None] + self._offsets]
        return chunk[:, :-1], chunk[:, 1:]

    def model_kwargs(self):
        return {"vocab_size": self.vocab_size, "block_size": self.block_size}

    def info(self):
        return {"name": self.name, "block_size": self.block_size, "vocab_size": self.vocab_size,
                "train_chars": len(self.train), "val_chars": len(self.val), "eval_size": self.eval_size,
                "corpus_sha1": self.corpus.sha1}


def _standardise(data: Splits, scale: float, mean: float | None = None, std: float | None = None) -> Splits:
    """uint8 (N, H, W) -> float32 (N, 1, H, W): divide by ``scale``, then standardise (train stats if not given)."""
    train_x = data.train_x.float().div_(scale)
    if mean is None:
        mean, std = float(train_x.mean()), float(train_x.std())

    def norm(x):
        return x.sub_(mean).div_(std).unsqueeze(1)

    return Splits(norm(train_x), data.train_y, norm(data.val_x.float().div_(scale)), data.val_y)


def _digits(data_dir, device, eval_size=None):
    return ClassificationTask("digits", _standardise(load_digits(), 16.0), 10, eval_size, device)


def _mnist(data_dir, device, eval_size=None):
    data = _standardise(load_mnist(data_dir), 255.0, MNIST_MEAN, MNIST_STD)
    return ClassificationTask("mnist", data, 10, eval_size, device)


def _chars(data_dir, device, block_size=64, eval_size=256):
    return CharTask(load_chars(), block_size, eval_size, device)


TASKS = {"digits": _digits, "mnist": _mnist, "chars": _chars}


def get_task(name: str, data_dir: str | os.PathLike | None = None, device: str | torch.device = "cpu",
             **kwargs) -> Task:
    """Build a task by name (see the module docstring). ``data_dir`` is used by "mnist" only; ``kwargs`` are
    ``eval_size`` for all tasks and ``block_size`` for "chars"."""
    if name not in TASKS:
        raise UnknownNameError(f"unknown task {name!r}; choose one of {sorted(TASKS)}")
    return TASKS[name](data_dir, device, **kwargs)
