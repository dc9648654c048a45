"""Helpers shared by the benchmarks: device names, result paths, the one results writer (weightcast.results),
median timing (weightcast.timing) and the conversion of a benchmark's wide rows into the writer's long rows."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

from weightcast.results import device_name, write_results  # noqa: F401  (re-exported for the scripts)
from weightcast.timing import median_ms  # noqa: F401  (re-exported for the benchmark scripts)

RESULTS = Path(__file__).resolve().parent / "results"


def row_config(row: Mapping[str, Any]) -> dict:
    """A results row's config as a dict (a JSON string when the row was read back from a CSV)."""
    return json.loads(row["config"]) if isinstance(row["config"], str) else row["config"]


def device_slug(device: str) -> str:
    """Short file-name key for results: 'cpu' or the GPU name in lower case with dashes."""
    if not device.startswith("cuda"):
        return "cpu"
    return re.sub(r"[^a-z0-9]+", "-", device_name(device).lower()).strip("-")


def long_rows(benchmark: str, rows: Iterable[Mapping[str, Any]], name: str, x_name: str, x_key: str,
              metrics: Mapping[str, str], config_keys: Iterable[str] = (),
              quantiles: Mapping[str, tuple[str, str]] | None = None) -> list[dict]:
    """One results row (weightcast.results schema) per metric of each wide row.

    ``name``: a format string over the wide row's keys (e.g. ``"{forecaster}/{backend}"``); ``x_key``: the key
    holding the x value (named ``x_name``); ``metrics``: wide key -> unit; ``quantiles``: wide key -> (q20 key, q80
    key) for the metrics that have them; ``config_keys``: wide keys copied into the row's config. Metrics whose
    value is None are left out.
    """
    out = []
    config_keys = list(config_keys)
    for row in rows:
        config = {k: row[k] for k in config_keys if row.get(k) is not None}
        for key, unit in metrics.items():
            if row.get(key) is None:
                continue
            q20, q80 = (row[q] for q in (quantiles or {})[key]) if key in (quantiles or {}) else ("", "")
            out.append({"benchmark": benchmark, "name": name.format(**row), "metric": key, "unit": unit,
                        "x_name": x_name, "x_value": row[x_key], "value": row[key], "q20": q20, "q80": q80,
                        "config": config})
    return out
