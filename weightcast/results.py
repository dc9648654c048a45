"""One results schema for every benchmark and study: a long-format CSV, one measurement per row.

Every row names what was measured (``benchmark``, ``name``, ``metric`` with its ``unit``), the point it was
measured at (``x_name`` = ``x_value``, e.g. params = 1000000; a ``seed`` where runs are seeded), the value with
its spread (``value`` is the median where there are repeats, ``q20``/``q80`` the 20th and 80th percentiles), any
other settings as JSON in ``config``, and where it came from: ``device``, ``timestamp`` (UTC, ISO 8601), the git
``commit`` of the tree, and the ``torch``/``triton``/``weightcast`` versions. The layout follows Liger-Kernel's
``benchmark/data/all_benchmark_data.csv``.

    from weightcast.results import write_results
    write_results("benchmarks/results/jump_cpu.csv",
                  [{"benchmark": "jump", "name": "linear", "metric": "time", "unit": "ms",
                    "x_name": "params", "x_value": 1_000_000, "value": 0.45, "q20": 0.44, "q80": 0.47}],
                  device="cpu")
"""
from __future__ import annotations

import csv
import datetime
import json
import os
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

MEASUREMENT = ("benchmark", "name", "metric", "unit", "x_name", "x_value", "seed", "value", "q20", "q80", "config")
PROVENANCE = ("device", "timestamp", "commit", "torch", "triton", "weightcast")
COLUMNS = MEASUREMENT + PROVENANCE
REQUIRED = ("benchmark", "name", "metric", "value")


def provenance(device: str) -> dict[str, str]:
    """Where a measurement comes from: device name, UTC time, git commit (with ``-dirty`` for local changes, or
    ``unknown`` outside a git checkout) and the versions of torch, triton and weightcast."""
    import torch

    from . import __version__

    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = ""
    return {"device": device_name(device), "timestamp": datetime.datetime.now(datetime.timezone.utc)
            .isoformat(timespec="seconds"), "commit": _git_commit(), "torch": torch.__version__,
            "triton": triton_version, "weightcast": __version__}


def write_results(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]], *, device: str,
                  append: bool = False) -> Path:
    """Write measurement ``rows`` (dicts keyed by :data:`MEASUREMENT` names) to the CSV ``path`` in the one schema.

    ``device``: the torch device measured on ("cpu", "cuda:0"); its human name is written. ``config`` may be a
    dict (written as JSON). ``append``: add to an existing file of this schema instead of replacing it. The file
    is written atomically (a temporary file renamed over it), so an interrupted run never leaves half a table.
    Raises ValueError for a row with an unknown column or without one of :data:`REQUIRED`, or when appending to
    a file of another schema.
    """
    path = Path(path)
    meta = provenance(device)
    out = []
    for row in rows:
        unknown = set(row) - set(MEASUREMENT)
        missing = [k for k in REQUIRED if row.get(k) is None]
        if unknown or missing:
            raise ValueError(f"results row {dict(row)} has unknown columns {sorted(unknown)} or lacks "
                             f"{missing}; the columns are {MEASUREMENT}")
        full = {k: row.get(k, "") for k in MEASUREMENT}
        if isinstance(full["config"], Mapping):
            full["config"] = json.dumps(full["config"], sort_keys=True)
        out.append({**full, **meta})
    if append and path.exists():
        existing = read_results(path)
        out = existing + out
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(out)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


def read_results(path: str | os.PathLike) -> list[dict[str, str]]:
    """Rows of a results CSV as dicts of strings; raises ValueError naming the file when its header is not the
    schema's."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise ValueError(f"{path} is not a weightcast results file: its columns are {reader.fieldnames}, "
                             f"expected {COLUMNS}")
        return list(reader)


def _git_commit() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def device_name(device: str) -> str:
    """Human name of a torch device: the GPU's name, or the CPU model."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or device
