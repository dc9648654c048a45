"""How often the validation metric is worse 100 steps later without any jump, at the jump methods' own steps.

    python benchmarks/jump_later_reference.py benchmarks/results/tuned-lag/tta_*.csv \
        benchmarks/results/tuned-lag/guard/tta_*.csv --out benchmarks/results/tuned-lag/jump_later_reference.md

Issue 16 asks that the metric 100 steps after every jump be at least the metric just before it. This reads the
study's results files (weightcast.study.write_csv; measured runs only, not the tuning runs), grouped by task, and
puts beside each jump method's count of jumps worse ``AFTER_STEPS`` steps later the same count for every method
that never jumps (no forecaster in its name), on its validation curve at the same (seed, step) pairs: the rate at
which the criterion fails with no jump at all, from the evaluation's noise and the plateau's wander. Jumps
without a later value (too close to the end of the run) are left out on both sides, and so are pairs whose curve
lacks either step.
"""
from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from pathlib import Path

from weightcast.results import read_results
from weightcast.study import STUDY_TASKS
from weightcast.study.methods import forecaster_of
from weightcast.study.run import AFTER_STEPS


def worse(goal_metric: str, before: float, later: float) -> bool:
    """Whether ``later`` is worse than ``before`` for the goal's metric (acc: lower, loss: higher)."""
    return later < before if goal_metric == "acc" else later > before


def reference_table(task: str, rows: list[dict]) -> str:
    """Markdown: per jump method in the results ``rows`` of ``task``, its jumps worse AFTER_STEPS steps later,
    and for each method without jumps the (seed, step) pairs worse AFTER_STEPS steps later on its curve."""
    metric = STUDY_TASKS[task].goal.metric
    curves, jumps = defaultdict(dict), defaultdict(dict)
    for r in rows:
        step = int(float(r["x_value"])) if r["x_value"] else None
        if r["metric"] == "val_metric":
            curves[r["name"]][(r["seed"], step)] = float(r["value"])
        elif r["metric"] in ("jump_before", f"jump_after_{AFTER_STEPS}"):
            jumps[r["name"]].setdefault((r["seed"], step), {})[r["metric"]] = float(r["value"])
    plain = [m for m in curves if forecaster_of(m) is None]   # the methods that never jump
    lines = [f"### {task}: {metric} worse {AFTER_STEPS} steps later (count / pairs judged)", "",
             "| jump method | its jumps | " + " | ".join(f"{m}, no jump, same steps" for m in plain) + " |",
             "|---" * (len(plain) + 2) + "|"]
    for method, by_step in jumps.items():
        judged = {key: v for key, v in by_step.items()
                  if not math.isnan(v.get(f"jump_after_{AFTER_STEPS}", math.nan) + v.get("jump_before", math.nan))}
        own = sum(worse(metric, v["jump_before"], v[f"jump_after_{AFTER_STEPS}"]) for v in judged.values())
        cells = [f"{own}/{len(judged)}"]
        for other in plain:
            curve = curves[other]
            pairs = [(curve[(s, t)], curve[(s, t + AFTER_STEPS)]) for s, t in judged
                     if (s, t) in curve and (s, t + AFTER_STEPS) in curve]
            cells.append(f"{sum(worse(metric, b, a) for b, a in pairs)}/{len(pairs)}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="+", type=Path, help="time-to-accuracy results CSVs (tta_<task>.csv)")
    parser.add_argument("--out", type=Path, default=None, help="write the tables here (markdown); else print")
    args = parser.parse_args(argv)
    by_task = defaultdict(list)   # the measured runs of every file, by task (a method in two files: one curve)
    for path in args.files:
        for row in read_results(path):
            config = json.loads(row["config"])
            if config.get("phase") == "measure":
                by_task[config["task"]].append(row)
    text = "\n".join(reference_table(task, rows) for task, rows in by_task.items())
    if args.out:
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
