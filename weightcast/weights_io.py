"""The one weight-file format of every learned component weightcast ships (forecasters, autoencoders, ...).

A weight file ``NAME.safetensors`` holds the component's tensors and, in the safetensors header metadata:

* ``format = "weightcast-weights"`` and ``version = "1"`` (files of the earlier ``weightcast-forecaster`` format,
  version 1, which has the same fields, are read too);
* ``kind``: which component it is ("farcast", "wnn", "latent-ae", ...), checked on load;
* ``config``: the JSON of the component's constructor arguments, which fix every tensor's shape.

The card ``NAME.json`` beside it (a sidecar, so that it is readable and diffable without loading the tensors)
says how the weights were made: command, data, steps, validation error. Both files are written to a temporary
name in the same directory and moved into place with ``os.replace``, so a reader never sees half a file.

:func:`load_weights` opens the file with ``safetensors.safe_open`` (no code runs from a file, unlike a pickle) and
checks, in order: the file exists and is safetensors (not truncated, empty or a pickle), its format, version and
kind, its config, every tensor's name and shape against what the config implies, and that every value is finite.
Each failure raises :class:`WeightFileError` naming the path and saying how to repair it.

    save_weights("ae.safetensors", model.state_dict(), kind="latent-ae", config=cfg, card={"command": ...})
    config, tensors = load_weights("ae.safetensors", "latent-ae", shapes=lambda cfg: {...},
                                   remake="weightcast ae train --zoo DIR --out ae.safetensors")
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from .errors import InputError

FORMAT, VERSION = "weightcast-weights", 1
# earlier formats with the same header fields, still read: (format, version)
COMPATIBLE = {("weightcast-forecaster", "1")}
SUFFIX = ".safetensors"


class WeightFileError(InputError):
    """A weight file that cannot be loaded or written: missing, not safetensors, truncated, of another kind,
    mis-shaped or non-finite. The message names the path and says how to repair it."""


def card_path(path: str | os.PathLike) -> Path:
    """The JSON card beside the weights file ``path`` (same name, ``.json`` suffix)."""
    return Path(path).with_suffix(".json")


def check_out_path(path: str | os.PathLike) -> Path:
    """Refuse, before any work, a path :func:`save_weights` could not write: a directory, one without the
    ``.safetensors`` suffix (its card would take the same name), or one under a file. Returns it as a Path."""
    path = Path(path)
    if path.is_dir():
        raise WeightFileError(f"{path} is a directory; pass a file name, e.g. --out {path / ('model' + SUFFIX)}")
    if path.suffix != SUFFIX:
        raise WeightFileError(f"{path}: a weight file's name must end in {SUFFIX} (its card goes beside it as "
                              f"{path.with_suffix('.json').name}); pass e.g. --out {path.with_suffix(SUFFIX)}")
    blocked = next((p for p in path.parents if p.exists()), None)
    if blocked is not None and not blocked.is_dir():
        raise WeightFileError(f"{path}: {blocked} is a file, not a directory; choose another output path")
    return path


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory and ``os.replace``; the
    temporary file is removed if writing fails."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_weights(path: str | os.PathLike, tensors: Mapping[str, torch.Tensor], *, kind: str,
                 config: Mapping[str, Any], card: Mapping[str, Any] | None = None) -> Path:
    """Write ``tensors`` (name -> tensor, stored contiguous on the CPU in their dtype) with ``kind`` and ``config``
    in the header, and ``card`` (if given) as JSON beside it, both atomically.

    Raises :class:`WeightFileError` for a path :func:`check_out_path` refuses and for non-finite values (a
    diverged training must not ship), before anything is written.
    """
    from safetensors.torch import save

    path = check_out_path(path)
    stored = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    bad = [k for k, v in stored.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise WeightFileError(f"refusing to write {path}: tensors {bad} hold non-finite values (training "
                              "diverged); lower the learning rate or check the training data, then train again")
    meta = {"format": FORMAT, "version": str(VERSION), "kind": kind, "config": json.dumps(dict(config),
                                                                                           sort_keys=True)}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, save(stored, metadata=meta))
    if card is not None:
        atomic_write(card_path(path), (json.dumps(dict(card), indent=1, sort_keys=True) + "\n").encode())
    return path


def load_weights(path: str | os.PathLike, kind: str,
                 shapes: Callable[[dict], Mapping[str, Sequence[int]]], remake: str | None = None,
                 ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read a weight file of ``kind``: returns ``(config, tensors)`` on the CPU, in their stored dtypes.

    ``shapes(config) -> {name: shape}`` gives the tensors the config implies (it may raise TypeError/ValueError
    for a config it cannot use). ``remake``: the command that makes such a file, quoted in every error. Raises
    :class:`WeightFileError` (see the module docstring for the checks).
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    fix = f"make it again with `{remake}`" if remake else "make it again with the command in its card"
    if not path.is_file():
        what = "a directory" if path.is_dir() else "missing"
        raise WeightFileError(f"no {kind} weight file at {path} ({what}); {fix}")
    bad = f"{path} is not a weightcast {kind} weight file"
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            names = list(f.keys())
            got_shapes = {k: tuple(f.get_slice(k).get_shape()) for k in names}
            if (meta.get("format"), meta.get("version")) in COMPATIBLE:
                meta = {**meta, "format": FORMAT, "version": str(VERSION)}
            if meta.get("format") == FORMAT and meta.get("kind") == kind:
                tensors = {k: f.get_tensor(k) for k in names}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise WeightFileError(f"{bad}: it is empty, truncated or not a safetensors file (a pickle?) ({exc}); "
                              f"{fix}") from None
    if meta.get("format") != FORMAT:
        raise WeightFileError(f"{bad}: its header has no format={FORMAT!r} (a safetensors file from elsewhere, or "
                              f"from an older weightcast?); {fix}")
    if meta.get("version") != str(VERSION):
        raise WeightFileError(f"{bad}: it is version {meta.get('version')!r}, this weightcast reads version "
                              f"{VERSION}; {fix}")
    if meta.get("kind") != kind:
        raise WeightFileError(f"{path} holds {meta.get('kind')!r} weights, not {kind!r}; pass a {kind} file "
                              f"or load this one as {meta.get('kind')!r}")
    try:
        config = json.loads(meta["config"])
        expected = {k: tuple(v) for k, v in shapes(config).items()}
    except (KeyError, TypeError, ValueError) as exc:
        raise WeightFileError(f"{bad}: its config is unusable ({exc}); {fix}") from None
    if got_shapes != expected:
        diff = sorted(set(got_shapes.items()) ^ set(expected.items()))
        raise WeightFileError(f"{bad}: its tensors do not have the shapes its config implies (differences: "
                              f"{diff}); {fix}")
    bad_values = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad_values:
        raise WeightFileError(f"{bad}: tensors {bad_values} hold non-finite values (NaN or inf); {fix}")
    return config, tensors


def read_card(path: str | os.PathLike) -> dict[str, Any]:
    """The card beside the weight file ``path``; raises :class:`WeightFileError` when it is missing or not
    JSON."""
    card = card_path(path)
    if not Path(path).exists():
        raise WeightFileError(f"{path} does not exist; give the path of a weight file (.safetensors) made by a "
                              "training command")
    try:
        return json.loads(card.read_text())
    except FileNotFoundError:
        raise WeightFileError(f"{path} has no card at {card}; cards are written by the training commands") \
            from None
    except (OSError, ValueError) as exc:
        raise WeightFileError(f"the card {card} is unreadable ({exc}); make the weights again") from None
