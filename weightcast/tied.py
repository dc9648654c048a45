"""Tied parameters: one ``nn.Parameter`` registered in several modules (e.g. an output head sharing the
embedding's weight)."""
from __future__ import annotations

from torch import nn


def parameter_holders(model: nn.Module) -> dict[int, dict[int, str]]:
    """``id(parameter)`` -> ``id(module)`` -> a name of the parameter in that module (``"<module>.<name>"``), over
    every module of ``model`` that holds the parameter directly; a module used under several names counts once
    (its first name). A parameter with more than one holder is tied."""
    holders: dict[int, dict[int, str]] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        for pname, p in module.named_parameters(recurse=False):
            holders.setdefault(id(p), {}).setdefault(id(module), f"{name}.{pname}" if name else pname)
    return holders
