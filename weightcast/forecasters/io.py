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

__all__ = ["ForecasterFileError", "card_path", "default_path", "load", "save"]


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
