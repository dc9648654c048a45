"""Reference models: MLP, LeNet-5, CIFAR-style ResNet-18 and a small character GPT.

``get(name, **kwargs)`` builds one by name; a task's ``model_kwargs()`` supplies the shape arguments:
``get("lenet5", **task.model_kwargs(), width=2)``.
"""
from .gpt import GPT
from .lenet import LeNet5
from .mlp import MLP
from .registry import MODELS, get, names
from .resnet import ResNet18

__all__ = ["GPT", "MLP", "MODELS", "LeNet5", "ResNet18", "get", "names"]
