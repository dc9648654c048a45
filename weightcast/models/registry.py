"""Model registry: the package's own models by name, torchvision's when torchvision is importable."""
from __future__ import annotations

from torch import nn

from ..errors import UnknownNameError
from .gpt import GPT
from .lenet import LeNet5
from .mlp import MLP
from .resnet import ResNet18

MODELS = {"mlp": MLP, "lenet5": LeNet5, "resnet18": ResNet18, "gpt": GPT}
TORCHVISION_PREFIX = "torchvision."


def names() -> list[str]:
    """The package's model names (torchvision's are reachable as ``"torchvision.<name>"``)."""
    return sorted(MODELS)


def get(name: str, **kwargs) -> nn.Module:
    """Build a model: ``get("lenet5", in_shape=(1, 28, 28), num_classes=10, width=2)``.

    Names in :data:`MODELS` build this package's models. ``"torchvision.<name>"``, or any other name that
    torchvision knows, builds ``torchvision.models.get_model(name, **kwargs)`` when torchvision is installed.
    """
    if name in MODELS:
        return MODELS[name](**kwargs)
    tv_name = name.removeprefix(TORCHVISION_PREFIX)
    try:
        import torchvision
    except ImportError:
        torchvision = None
    if torchvision is not None and tv_name in torchvision.models.list_models():
        return torchvision.models.get_model(tv_name, **kwargs)
    hint = "" if torchvision is not None else " (torchvision is not installed, so its models are unavailable)"
    raise UnknownNameError(f"unknown model {name!r}; choose one of {names()}{hint}")
