"""A zoo on disk: ``manifest.json`` plus ``runs/<run id>.safetensors``, every file written atomically.

The manifest is ``{"format": "weightcast-zoo", "version": 1, "held_out": [...], "runs": [entry, ...]}``; an entry
holds the run's id, spec, file, tensor names and shapes, curves and final metrics (see ``build.run_entry``).
A trajectory file maps each parameter name to its (T, *shape) float32 snapshots and ``STEPS_KEY`` to the (T,)
int64 steps at which they were taken. Files are written to a temporary name in the same directory and moved
into place with ``os.replace``, so a reader never sees half a file and an interrupted build loses nothing that
the manifest lists.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save

from .spec import HELD_OUT

MANIFEST = "manifest.json"
FORMAT, VERSION = "weightcast-zoo", 1
STEPS_KEY = "__steps__"
TMP_MARK = ".tmp-"


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace``."""
    tmp = path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def remove_stale_temps(zoo_dir: Path) -> None:
    """Delete temporary files an interrupted build left behind."""
    for path in [*zoo_dir.glob(f".*{TMP_MARK}*"), *zoo_dir.glob(f"runs/.*{TMP_MARK}*")]:
        path.unlink()


def read_manifest(zoo_dir: str | os.PathLike) -> dict:
    """The manifest of ``zoo_dir``; an empty one if the directory has none yet."""
    path = Path(zoo_dir) / MANIFEST
    if not path.exists():
        return {"format": FORMAT, "version": VERSION, "held_out": list(HELD_OUT), "runs": []}
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise ValueError(f"{path} is not a {FORMAT} manifest of version {VERSION}; "
                         "build the zoo again with this version of weightcast.")
    return manifest


def write_manifest(zoo_dir: str | os.PathLike, manifest: dict) -> None:
    atomic_write(Path(zoo_dir) / MANIFEST, json.dumps(manifest, indent=1).encode())


def save_trajectory(path: Path, snapshots: dict[str, torch.Tensor], steps: torch.Tensor, run_id: str) -> None:
    """Write ``snapshots`` (name -> (T, *shape)) and ``steps`` (T,) int64 to one safetensors file."""
    if STEPS_KEY in snapshots:
        raise ValueError(f"a parameter is named {STEPS_KEY!r}, the key reserved for the steps; rename it.")
    tensors = {name: t.contiguous() for name, t in snapshots.items()}
    tensors[STEPS_KEY] = steps.to(torch.int64)
    atomic_write(path, save(tensors, metadata={"run_id": run_id}))


def load_trajectory(zoo_dir: str | os.PathLike, entry: dict) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """One run's trajectory: (name -> (T, *shape) float32 snapshots in the manifest's tensor order, (T,) steps)."""
    tensors = load_file(Path(zoo_dir) / entry["file"])
    steps = tensors.pop(STEPS_KEY)
    return {t["name"]: tensors[t["name"]] for t in entry["tensors"]}, steps
