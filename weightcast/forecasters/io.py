"""Files of learned forecasters, in the project's one weight-file format (:mod:`weightcast.weights_io`).

A forecaster file ``NAME.safetensors`` holds the model's float32 tensors with ``kind`` ("farcast" | "wnn" | ...)
and ``config`` (the model's hyper-parameters, which fix every tensor's shape) in its header; the card
``NAME.json`` beside it says how the weights were made (zoo, split, steps, losses, date, command).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ..weights_io import WeightFileError, card_path, load_weights, save_weights

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
ForecasterFileError = WeightFileError  # the name this module's users know

__all__ = ["ForecasterFileError", "card_path", "default_path", "load", "resolve", "save"]


def default_path(kind: str) -> Path:
    """The weights shipped inside the package for forecaster ``kind``."""
    return WEIGHTS_DIR / f"{kind}.safetensors"


def save(path: str | os.PathLike, kind: str, config: dict[str, Any], tensors: dict[str, torch.Tensor],
         card: dict[str, Any] | None = None) -> None:
    """Write ``tensors`` (as contiguous float32 CPU tensors) with ``kind`` and ``config`` in the header, and
    ``card`` (if given) beside it, atomically; non-finite weights raise :class:`ForecasterFileError`."""
    save_weights(path, {k: v.detach().to("cpu", torch.float32) for k, v in tensors.items()}, kind=kind,
                 config=config, card=card)


def load(path: str | os.PathLike, kind: str, expected_shapes) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read a forecaster file of ``kind``: returns ``(config, tensors)`` (float32, CPU).

    ``expected_shapes(config) -> {name: shape}`` gives the tensors the config implies. Raises
    :class:`ForecasterFileError` for a missing, truncated, non-safetensors, foreign, wrong-kind, mis-shaped or
    non-finite file (see :func:`weightcast.weights_io.load_weights`).
    """
    config, tensors = load_weights(path, kind, expected_shapes,
                                   remake=f"weightcast forecaster train --kind {kind} --zoo DIR --out {path}")
    return config, {k: v.to(torch.float32) for k, v in tensors.items()}


def resolve(kind: str, path: str | os.PathLike | None, tensors: dict[str, torch.Tensor] | None,
            config: dict[str, Any] | None, expected_shapes) -> tuple[str | None, dict[str, Any], dict[str, torch.Tensor]]:
    """The weights of a learned forecaster of ``kind``: ``(path, config, tensors)`` (float32 copies).

    With ``tensors`` None, read from ``path`` (default: the shipped file) through :func:`load`; otherwise the
    given ``tensors`` and ``config`` (training, tests), whose shapes must be ``expected_shapes(config)`` (a
    ValueError names both). The returned path is None for tensors given directly.
    """
    if tensors is None:
        path = str(path or default_path(kind))
        config, tensors = load(path, kind, expected_shapes)
    else:
        path, config = None, dict(config)
        got, expected = {k: tuple(v.shape) for k, v in tensors.items()}, expected_shapes(config)
        if got != expected:
            raise ValueError(f"{kind} tensors {got} do not match config {config} (expected {expected})")
    return path, config, {k: v.detach().to(torch.float32).clone() for k, v in tensors.items()}
