"""Files of learned forecasters: safetensors weights plus a JSON card, never pickle.

A forecaster file ``NAME.safetensors`` holds the model's float32 tensors and, in the safetensors header metadata,
``format = "weightcast-forecaster"``, ``version``, ``kind`` ("farcast" | "wnn") and ``config`` (the JSON of the
model's hyper-parameters, which fix every tensor's shape). The card ``NAME.json`` beside it says how the weights
were made: zoo, split, steps, losses, date and the command that reproduces them.

:func:`load` reads the file with ``safetensors`` only (no code runs from a file) and checks, in this order, that it
is a safetensors file, that it is a weightcast forecaster of the expected kind and version, and that its tensors
have exactly the names and shapes its config implies; each failure raises :class:`ForecasterFileError` saying what
is wrong and what to do.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

FORMAT, VERSION = "weightcast-forecaster", 1
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


class ForecasterFileError(ValueError):
    """A forecaster file that cannot be loaded: not safetensors, truncated, wrong kind or wrong shapes."""


def card_path(path: str | os.PathLike) -> Path:
    """The JSON card beside the weights file ``path`` (same name, ``.json`` suffix)."""
    return Path(path).with_suffix(".json")


def default_path(kind: str) -> Path:
    """The weights shipped inside the package for forecaster ``kind``."""
    return WEIGHTS_DIR / f"{kind}.safetensors"


def save(path: str | os.PathLike, kind: str, config: dict[str, Any], tensors: dict[str, torch.Tensor],
         card: dict[str, Any] | None = None) -> None:
    """Write ``tensors`` (stored as contiguous float32 CPU tensors) with ``kind`` and ``config`` in the header,
    and ``card`` (if given) as JSON beside it. Both files are written to a temporary name and moved into place."""
    from safetensors.torch import save as st_save

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, "version": str(VERSION), "kind": kind, "config": json.dumps(config, sort_keys=True)}
    data = st_save({k: v.detach().to("cpu", torch.float32).contiguous() for k, v in tensors.items()}, metadata=meta)
    _atomic_write(path, data)
    if card is not None:
        _atomic_write(card_path(path), (json.dumps(card, indent=1, sort_keys=True) + "\n").encode())


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def load(path: str | os.PathLike, kind: str, expected_shapes) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read a forecaster file of ``kind``: returns ``(config, tensors)`` (float32, CPU).

    ``expected_shapes(config) -> {name: shape}`` gives the tensors the config implies; any difference (a missing,
    extra or mis-shaped tensor) raises :class:`ForecasterFileError`, as do a file that is not safetensors, a
    truncated one, or one of another kind or version.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load as st_load

    path = Path(path)
    if not path.is_file():
        raise ForecasterFileError(f"no forecaster file at {path}; train one with "
                                  f"`weightcast forecaster train --kind {kind} --zoo DIR --out {path}`")
    raw = path.read_bytes()
    where = f"{path} is not a weightcast {kind} forecaster file"
    try:
        header_len = int.from_bytes(raw[:8], "little")
        if len(raw) < 8 or header_len <= 0 or 8 + header_len > len(raw):
            raise ForecasterFileError(f"{where}: it is not a safetensors file or it is truncated "
                                      f"({len(raw)} bytes); train it again or copy it again")
        meta = json.loads(raw[8:8 + header_len]).get("__metadata__") or {}
        tensors = st_load(raw)
    except ForecasterFileError:
        raise
    except (SafetensorError, ValueError, UnicodeDecodeError, AttributeError) as exc:
        raise ForecasterFileError(f"{where}: it is not a valid safetensors file or it is truncated ({exc}); "
                                  "train it again or copy it again") from None
    if meta.get("format") != FORMAT:
        raise ForecasterFileError(f"{where}: its header has no format={FORMAT!r} (a safetensors file from "
                                  "elsewhere?); pass a file written by `weightcast forecaster train`")
    if meta.get("version") != str(VERSION):
        raise ForecasterFileError(f"{where}: version {meta.get('version')!r}, this weightcast reads version "
                                  f"{VERSION}; train it again with this version")
    if meta.get("kind") != kind:
        raise ForecasterFileError(f"{path} holds a {meta.get('kind')!r} forecaster, not {kind!r}; load it with "
                                  f"weightcast.forecasters.get({meta.get('kind')!r}, path=...)")
    try:
        config = json.loads(meta["config"])
        expected = {k: tuple(v) for k, v in expected_shapes(config).items()}
    except (KeyError, TypeError, ValueError) as exc:
        raise ForecasterFileError(f"{where}: its config is unreadable ({exc}); train it again") from None
    got = {k: tuple(v.shape) for k, v in tensors.items()}
    if got != expected:
        diff = sorted(set(got.items()) ^ set(expected.items()))
        raise ForecasterFileError(f"{where}: tensors {got} do not match the shapes its config implies "
                                  f"{expected} (differences: {diff}); train it again")
    return config, {k: v.to(torch.float32) for k, v in tensors.items()}
