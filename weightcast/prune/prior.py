"""A task's input distribution as a class-conditional Gaussian: synthetic calibration data for data-free pruning.

The data-based pruners need about 1,024 inputs (OBS) or labelled inputs (WoodFisher, CHITA). :class:`InputPrior`
stands in for them when no data may be read at pruning time: it is fitted once, on a task's training split, as the
model of linear discriminant analysis -- one mean per class, a covariance shared by the classes (the within-class
covariance), the class frequencies -- plus the range of the inputs; :meth:`InputPrior.sample` then draws
labelled inputs: a class c ~ frequencies, x ~ N(mean_c, covariance), clamped to the range. The mask
hypernetwork keeps one prior per task it was trained on (:mod:`.hypernet`) and runs WoodFisher on its samples.

Why this form: OBS needs only the second moments of each layer's inputs, which one Gaussian with the data's mean
and covariance gets right for the first layer, but deeper layers then see non-image statistics (on the prune
zoo's held-out LeNet-5 at s = 0.9, OBS on such samples kept 87.3% against 97.1% on real examples); class means
and clamping to the data's range bring the samples close enough for WoodFisher, whose per-sample gradients
need the labels the classes give (measured per held-out model in benchmarks/results/prune and the weightcast
prune README).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .layers import eval_output

FIELDS = ("means", "scale_tril", "class_probs", "bounds")


class InputPrior:
    """Class-conditional Gaussian of a task's inputs (module docstring).

    means: (C, D) float32 class means of the flattened inputs; scale_tril: (D, D) float32 lower Cholesky factor
    of the within-class covariance (ridge added); class_probs: (C,) class frequencies; bounds: (2,) the smallest
    and largest input value; shape: the input shape without the batch dimension (D = prod(shape)).
    """

    def __init__(self, means: torch.Tensor, scale_tril: torch.Tensor, class_probs: torch.Tensor,
                 bounds: torch.Tensor, shape: tuple[int, ...]):
        d = math.prod(shape)
        if (means.dim() != 2 or means.shape[1] != d or len(means) < 2 or scale_tril.shape != (d, d)
                or class_probs.shape != (len(means),) or bounds.shape != (2,)):
            raise ValueError(f"an input prior of shape {tuple(shape)} needs means (C >= 2, {d}), scale_tril ({d}, "
                             f"{d}), class_probs (C,) and bounds (2,); got {tuple(means.shape)}, "
                             f"{tuple(scale_tril.shape)}, {tuple(class_probs.shape)} and {tuple(bounds.shape)}")
        if not all(torch.isfinite(t).all() for t in (means, scale_tril, class_probs, bounds)):
            raise ValueError("an input prior's tensors must be finite; refit it with InputPrior.fit")
        self.means, self.scale_tril, self.class_probs, self.bounds = means, scale_tril, class_probs, bounds
        self.shape = tuple(int(d) for d in shape)

    @classmethod
    def fit(cls, x: torch.Tensor, y: torch.Tensor, ridge: float = 1e-4) -> "InputPrior":
        """The prior of inputs ``x`` (N, *shape) with integer labels ``y`` (N,) in 0..C-1, C >= 2: class means,
        the within-class covariance (float64, + ``ridge`` x its mean diagonal -- at least 1e-12 -- on the
        diagonal, so that inputs that never vary, an MNIST border pixel, still give a Cholesky factor), class
        frequencies and value range. Raises ValueError for labels that are not a 1-D integer tensor as long as
        ``x``, fewer than two classes, or a class in 0..max(y) without examples."""
        if x.dim() < 2 or y.dim() != 1 or len(x) != len(y) or not len(y) or y.is_floating_point() \
                or y.dtype == torch.bool:
            raise ValueError(f"fit needs inputs (N, *shape) and integer labels (N,), N > 0; got x "
                             f"{tuple(x.shape)} and y {tuple(y.shape)} {y.dtype}")
        y = y.long()
        flat = x.flatten(1).double()
        classes = int(y.max()) + 1
        counts = torch.bincount(y, minlength=classes)
        if classes < 2 or (counts == 0).any():
            raise ValueError(f"an input prior needs examples of every class 0..max(y), at least two classes; "
                             f"classes {(counts == 0).nonzero().flatten().tolist()} have no example")
        means = torch.zeros(classes, flat.shape[1], dtype=torch.float64).index_add_(0, y, flat) / counts[:, None]
        centred = flat - means[y]
        cov = centred.T @ centred / len(flat)
        cov += ridge * cov.diagonal().mean().clamp(min=1e-12) * torch.eye(len(cov), dtype=cov.dtype)
        return cls(means.float(), torch.linalg.cholesky(cov).float(), (counts / counts.sum()).float(),
                   torch.stack([x.min(), x.max()]).float(), tuple(x.shape[1:]))

    def sample(self, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` labelled synthetic inputs: (x (n, *shape) float32, y (n,) int64), the same for the same
        ``seed``."""
        gen = torch.Generator().manual_seed(seed)
        y = torch.multinomial(self.class_probs, n, replacement=True, generator=gen)
        noise = torch.randn(n, self.means.shape[1], generator=gen) @ self.scale_tril.T
        x = (self.means[y] + noise).clamp(float(self.bounds[0]), float(self.bounds[1]))
        return x.reshape(n, *self.shape), y

    def logits(self, model: nn.Module, samples: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
        """(outputs (samples, C), sampled classes) of ``model`` in eval mode without gradients on ``samples``
        draws (seed 0) in its parameters' device and dtype; its mode is restored. Raises ValueError, saying why,
        when the model does not run on the prior's inputs or does not return one logit per class."""
        x, y = self.sample(samples)
        param = next(model.parameters(), None)
        if param is not None:
            x, y = x.to(param.device, param.dtype), y.to(param.device)
        try:
            out = eval_output(model, x)
        except Exception as exc:  # noqa: BLE001 -- any failure means the model is not a classifier of these inputs
            raise ValueError(f"the model does not run on this prior's inputs {self.shape} ({type(exc).__name__}: "
                             f"{exc})") from exc
        if not isinstance(out, torch.Tensor) or out.shape != (samples, len(self.means)):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"the model returns {got} on this prior's inputs {self.shape}, not one logit per "
                             f"class ({samples}, {len(self.means)})")
        return out, y

    def accepts(self, model: nn.Module, samples: int = 256) -> bool:
        """Whether ``model`` is a classifier of this prior's task: :meth:`logits` succeeds and the model names the
        sampled class of at least twice the chance fraction (2 / C) of the draws. The last check tells a model
        of another task with the same input shape (FashionMNIST's 1x28x28) from one of this task: the prune
        zoo's held-out MNIST and digits models name 0.51 to 0.88 of them, an untrained model about 1 / C."""
        try:
            out, y = self.logits(model, samples)
        except ValueError:
            return False
        return float((out.argmax(1) == y).float().mean()) >= 2 / len(self.means)

    def tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        """The fields as ``{prefix + field: tensor}`` (for safetensors; :meth:`from_tensors` reads them)."""
        return {prefix + f: getattr(self, f).contiguous() for f in FIELDS}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], prefix: str, shape: tuple[int, ...]) -> "InputPrior":
        return cls(*(tensors[prefix + f] for f in FIELDS), shape)
