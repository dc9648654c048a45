"""Reference models: parameter counts, output shapes, causality and the registry."""
import pytest
import torch

from weightcast import models
from weightcast.errors import InputError


def count(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name, kwargs, expected", [
    ("resnet18", dict(num_classes=10), 11_173_962),
    ("lenet5", dict(in_shape=(1, 28, 28)), 61_706),  # the classic 156 + 2416 + 48120 + 10164 + 850
    ("lenet5", dict(in_shape=(1, 8, 8)), 156 + 2416 + 64 * 120 + 120 + 10164 + 850),
    ("mlp", dict(in_shape=(1, 8, 8), widths=(32, 16)), 64 * 32 + 32 + 32 * 16 + 16 + 16 * 10 + 10),
    # embeddings 11*8 + 16*8; per layer 2 LayerNorms, qkv, proj, MLP; final LayerNorm; head
    ("gpt", dict(vocab_size=11, block_size=16, n_layer=2, n_head=2, n_embd=8),
     11 * 8 + 16 * 8 + 2 * (4 * 8 + 8 * 24 + 24 + 8 * 8 + 8 + 8 * 32 + 32 + 32 * 8 + 8) + 2 * 8 + 8 * 11 + 11),
])
def test_parameter_counts(name, kwargs, expected):
    assert count(models.get(name, **kwargs)) == expected


@pytest.mark.parametrize("name, kwargs, shape", [
    ("mlp", dict(in_shape=(1, 28, 28), num_classes=10), (3, 1, 28, 28)),
    ("lenet5", dict(in_shape=(1, 28, 28), width=0.5), (3, 1, 28, 28)),
    ("lenet5", dict(in_shape=(1, 8, 8), width=2), (3, 1, 8, 8)),
    ("lenet5", dict(in_shape=(3, 32, 32), num_classes=7), (3, 3, 32, 32)),
    ("resnet18", dict(in_shape=(1, 28, 28), num_classes=7, width=0.125), (2, 1, 16, 16)),
])
def test_image_models_forward_and_backward(name, kwargs, shape):
    torch.manual_seed(0)
    model = models.get(name, **kwargs)
    out = model(torch.randn(shape))
    assert out.shape == (shape[0], kwargs.get("num_classes", 10)) and out.dtype == torch.float32
    out.square().sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_lenet_width_scales_every_layer():
    convs = [m for m in models.LeNet5(width=4).modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert [m.weight.shape[0] for m in convs] == [24, 64, 480, 336, 10]


def test_lenet_rejects_tiny_inputs():
    with pytest.raises(ValueError, match="at least 4x4"):
        models.LeNet5(in_shape=(1, 3, 3))


def test_gpt_is_causal():
    torch.manual_seed(0)
    gpt = models.get("gpt", vocab_size=13, block_size=12, n_layer=2, n_head=2, n_embd=16)
    idx = torch.randint(0, 13, (2, 12))
    changed = idx.clone()
    changed[:, 7:] = (changed[:, 7:] + 1) % 13
    a, b = gpt(idx), gpt(changed)
    assert a.shape == (2, 12, 13)
    torch.testing.assert_close(a[:, :7], b[:, :7])
    assert not torch.allclose(a[:, 7:], b[:, 7:])
    assert gpt(idx[:, :5]).shape == (2, 5, 13)
    with pytest.raises(ValueError, match="block_size"):
        gpt(torch.zeros(1, 13, dtype=torch.long))


def test_gpt_heads_must_divide_width():
    with pytest.raises(ValueError, match="multiple of n_head"):
        models.GPT(vocab_size=5, n_embd=10, n_head=4)


def test_registry():
    assert models.names() == ["gpt", "lenet5", "mlp", "resnet18"]
    with pytest.raises(KeyError, match="unknown model 'nope'"):
        models.get("nope")
    with pytest.raises(InputError, match="^unknown model 'nope'"):   # unquoted: printed as one line
        models.get("nope")


def test_torchvision_models_by_name():
    pytest.importorskip("torchvision")
    model = models.get("torchvision.resnet18", num_classes=3)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 3)
