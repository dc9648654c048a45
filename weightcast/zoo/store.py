"""A zoo on disk: ``manifest.json`` plus ``runs/<run id>.safetensors``, every file written atomically and verified
when read.

The manifest is ``{"format": "weightcast-zoo", "version": 1, "held_out": [...], "runs": [entry, ...]}``; an entry
holds the run's id, spec, file, tensor names and shapes, number of records, curves and final metrics (see
``build.run_entry``). A trajectory file maps each parameter name to its (T, *shape) float32 snapshots and
``STEPS_KEY`` to the (T,) int64 steps at which they were taken; its header metadata holds the run id and the
run's manifest entry (JSON), so a damaged manifest can be rebuilt from the run files (:func:`recover_manifest`).

Files are written to a temporary name in the same directory and moved into place with ``os.replace``, so a
reader never sees half a file and an interrupted build loses nothing that the manifest lists. Every reader goes
through :func:`read_manifest` and :func:`load_trajectory`, which check the file against the manifest (present,
readable, the listed tensors with the listed shapes) and raise :class:`ZooFileError` naming the file and the
repair: run the same ``weightcast zoo build`` again, which rebuilds broken runs (:func:`verify_run`).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..errors import InputError
from ..weights_io import atomic_write
from .spec import HELD_OUT

MANIFEST = "manifest.json"
FORMAT, VERSION = "weightcast-zoo", 1
STEPS_KEY = "__steps__"
TMP_MARK = ".tmp-"
ENTRY_KEYS = ("id", "file", "spec", "tensors", "num_records")


class ZooFileError(InputError):
    """A zoo file that cannot be used: a missing, damaged or foreign manifest, or a run file that is missing,
    truncated or disagrees with the manifest. The message names the file and says how to repair it."""


def _repair(zoo_dir: Path) -> str:
    return (f"repair it by running the `weightcast zoo build --out {zoo_dir}` command that built this zoo again "
            "(it keeps the intact runs and rebuilds the broken ones)")


def remove_stale_temps(zoo_dir: Path) -> None:
    """Delete temporary files an interrupted build left behind."""
    for path in [*zoo_dir.glob(f".*{TMP_MARK}*"), *zoo_dir.glob(f"runs/.*{TMP_MARK}*")]:
        path.unlink()


def empty_manifest() -> dict:
    return {"format": FORMAT, "version": VERSION, "held_out": list(HELD_OUT), "runs": []}


def read_manifest(zoo_dir: str | os.PathLike, missing_ok: bool = True) -> dict:
    """The manifest of ``zoo_dir``; an empty one if the directory has none yet (unless ``missing_ok`` is False).
    Raises :class:`ZooFileError` for a manifest that is cut, not JSON, of another format or version, or whose
    run entries lack the keys readers need."""
    root = Path(zoo_dir)
    path = root / MANIFEST
    if not path.is_file():
        if missing_ok and not path.exists():
            return empty_manifest()
        raise ZooFileError(f"{root} is not a zoo: it has no {MANIFEST}; build one with "
                           f"`weightcast zoo build --out {root}`")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ZooFileError(f"the zoo manifest {path} is damaged ({exc}); {_repair(root)}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ZooFileError(f"{path} is not a {FORMAT} manifest; {_repair(root)}")
    if manifest.get("version") != VERSION:
        raise ZooFileError(f"{path} is a {FORMAT} manifest of version {manifest.get('version')!r}; this "
                           f"weightcast reads version {VERSION}: build the zoo again with this version")
    runs = manifest.get("runs")
    if not isinstance(runs, list) or not all(isinstance(e, dict) and all(k in e for k in ENTRY_KEYS)
                                             for e in runs):
        raise ZooFileError(f"the zoo manifest {path} is damaged (its runs are not a list of entries with "
                           f"{ENTRY_KEYS}); {_repair(root)}")
    return manifest


def write_manifest(zoo_dir: str | os.PathLike, manifest: dict) -> None:
    atomic_write(Path(zoo_dir) / MANIFEST, json.dumps(manifest, indent=1).encode())


def save_trajectory(path: Path, snapshots: dict[str, torch.Tensor], steps: torch.Tensor, entry: dict) -> None:
    """Write ``snapshots`` (name -> (T, *shape)) and ``steps`` (T,) int64 to one safetensors file, with the run's
    manifest ``entry`` in its header."""
    from safetensors.torch import save

    if STEPS_KEY in snapshots:
        raise ValueError(f"a parameter is named {STEPS_KEY!r}, the key reserved for the steps; rename it.")
    tensors = {name: t.contiguous() for name, t in snapshots.items()}
    tensors[STEPS_KEY] = steps.to(torch.int64)
    atomic_write(path, save(tensors, metadata={"run_id": entry["id"], "entry": json.dumps(entry)}))


def _read_run(zoo_dir: Path, entry: dict, load: bool) -> tuple[str | None, dict[str, torch.Tensor]]:
    """(what is wrong with the run file of ``entry``, or None; its tensors when ``load``)."""
    from safetensors import SafetensorError, safe_open

    path = zoo_dir / entry["file"]
    if not path.is_file():
        return "the file is missing", {}
    expected = {t["name"]: (entry["num_records"], *t["shape"]) for t in entry["tensors"]}
    expected[STEPS_KEY] = (entry["num_records"],)
    try:
        with safe_open(str(path), framework="pt") as f:
            got = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
            if got != expected:
                diff = sorted(set(got.items()) ^ set(expected.items()))
                return f"its tensors do not match the manifest (differences: {diff})", {}
            return None, {k: f.get_tensor(k) for k in got} if load else {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        return f"it is truncated or not a safetensors file ({exc})", {}


def verify_run(zoo_dir: str | os.PathLike, entry: dict) -> str | None:
    """What is wrong with the run file of manifest ``entry`` (missing, truncated, not the listed tensors and
    shapes), or None when it is intact. Reads the file's header only."""
    return _read_run(Path(zoo_dir), entry, load=False)[0]


def load_trajectory(zoo_dir: str | os.PathLike, entry: dict) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """One run's trajectory: (name -> (T, *shape) float32 snapshots in the manifest's tensor order, (T,) steps).
    Raises :class:`ZooFileError` naming the file when it is missing, truncated or disagrees with the manifest."""
    root = Path(zoo_dir)
    problem, tensors = _read_run(root, entry, load=True)
    if problem is not None:
        raise ZooFileError(f"run file {root / entry['file']} of run {entry['id']} is broken: {problem}; "
                           f"{_repair(root)}")
    steps = tensors.pop(STEPS_KEY)
    return {t["name"]: tensors[t["name"]] for t in entry["tensors"]}, steps


def recover_manifest(zoo_dir: str | os.PathLike) -> tuple[dict, list[str]]:
    """A manifest rebuilt from the entries stored in the intact run files of ``zoo_dir`` (for a manifest that is
    damaged); also the names of the run files that could not be used."""
    from safetensors import SafetensorError, safe_open

    root = Path(zoo_dir)
    manifest, unusable = empty_manifest(), []
    for path in sorted((root / "runs").glob("*.safetensors")):
        try:
            with safe_open(str(path), framework="pt") as f:
                entry = json.loads((f.metadata() or {})["entry"])
        except (SafetensorError, OSError, ValueError, KeyError, RuntimeError):
            unusable.append(path.name)
            continue
        if not all(k in entry for k in ENTRY_KEYS) or verify_run(root, entry) is not None:
            unusable.append(path.name)
            continue
        manifest["runs"].append(entry)
    return manifest, unusable

