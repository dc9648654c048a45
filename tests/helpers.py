"""Small models and training loops shared by the optimizer tests; where the tests find the shared MNIST files."""
import os
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(os.environ.get("WEIGHTCAST_DATA") or Path(__file__).resolve().parents[1] / "../shared/data")
needs_mnist = pytest.mark.skipif(not (SHARED_DATA / "mnist" / "train-images-idx3-ubyte.gz").exists()
                                 and not (SHARED_DATA / "train-images-idx3-ubyte.gz").exists(),
                                 reason=f"MNIST files not found under {SHARED_DATA}")


def odd_params(seed: int = 0, device: str = "cpu") -> list[torch.nn.Parameter]:
    """Parameters of odd sizes, one of 278,011 elements (exposes tail bugs), plus a 4-D conv-like one."""
    g = torch.Generator().manual_seed(seed)
    shapes = [(278011,), (13, 7), (5,), (3, 2, 3, 3), (1,)]
    return [torch.nn.Parameter(torch.randn(s, generator=g).to(device)) for s in shapes]


_NOISE = torch.randn(300_000, generator=torch.Generator().manual_seed(0))


def fake_grads(params, step: int) -> None:
    """Deterministic pseudo-gradients that change with the step and the parameters (no autograd needed)."""
    for i, p in enumerate(params):
        n = p.numel()
        start = (7919 * step + 104729 * i) % (_NOISE.numel() - n + 1)
        noise = _NOISE[start:start + n].view(p.shape).to(p.device)
        p.grad = noise * 0.1 + 0.01 * p.detach()


def run(opt, params, steps: int, start: int = 0) -> None:
    for t in range(start, start + steps):
        fake_grads(params, t)
        opt.step()


def clone_params(params):
    return [torch.nn.Parameter(p.detach().clone()) for p in params]


def tiny_classifier(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))


def classifier_batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(64, 6, generator=g), torch.randint(0, 3, (64,), generator=g)


class TiedHead(torch.nn.Module):
    """A token embedding and an output head sharing one weight (tied), a Linear between: the shape of a small
    language model's ends."""

    def __init__(self, vocab: int = 20, width: int = 8):
        super().__init__()
        self.tok = torch.nn.Embedding(vocab, width)
        self.mid = torch.nn.Linear(width, width)
        self.head = torch.nn.Linear(width, vocab, bias=False)
        self.head.weight = self.tok.weight

    def forward(self, i):
        return self.head(self.mid(self.tok(i)))
