"""Time-to-accuracy study at budgets where forecasting can matter: Forecast(AdamW) with long decaying horizons
against the alternatives a user would pick, side by side.

    python benchmarks/time_to_accuracy.py --tasks digits-mlp-deep digits-mlp mnist-mlp \
        --data-dir ../shared/data [--seeds 3] [--methods ...] [--quick]

For each task (see weightcast/study/tasks.py) every baseline's learning rate is tuned on seed 0 over the grid of
its family; forecasting methods run at their base's tuned rate; all are measured on seeds 1..--seeds. Writes
benchmarks/results/long/tta_<task>.csv (every run and every jump, in the schema of weightcast.results.write_results),
tta_<task>.md (the summary table) and tta_<task>.png (validation curves, jumps marked). ``--quick`` runs a short
budget with one seed and a one-value grid, for CI; its results go to a temporary folder unless --out is given.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from weightcast.study import DEFAULT_METHODS, STUDY_TASKS, markdown_table, plot, run_study, summarise, write_csv

RESULTS = Path(__file__).resolve().parent / "results" / "long"


def _lr_grids(parser: argparse.ArgumentParser, items: list[str]) -> dict[str, tuple[float, ...]]:
    grids = {}
    for item in items:
        name, _, values = item.partition("=")
        try:
            grids[name] = tuple(float(v) for v in values.split(","))
        except ValueError:
            parser.error(f"--lr-grid wants NAME=LR[,LR...], e.g. adamw=1e-3,3e-3; got {item!r}")
        if not name or not grids[name] or min(grids[name]) <= 0:
            parser.error(f"--lr-grid wants a name and positive learning rates, got {item!r}")
    return grids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=list(STUDY_TASKS), choices=list(STUDY_TASKS))
    parser.add_argument("--budget", type=int, default=None, help="override every task's step budget")
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--lr-grid", nargs="+", default=[], metavar="NAME=LR[,LR...]",
                        help="learning-rate grid of a family (sgd, adamw) or a method, replacing the default "
                             "(one value: no tuning runs), e.g. adamw=1e-3")
    parser.add_argument("--k-max", type=int, default=None,
                        help="horizon of the first jump in record intervals, replacing every task's (it decays to "
                             "1 over the budget), e.g. 6 for a forecaster trained for horizons up to 6 intervals")
    parser.add_argument("--data-dir", default=os.environ.get("WEIGHTCAST_DATA"))
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    parser.add_argument("--quick", action="store_true",
                        help="150 steps, 1 seed, 1 lr per family: CI's smoke run, not results (the goals are seldom "
                             "reached in it; weightcast demo --quick judges at a goal its budget reaches)")
    args = parser.parse_args(argv)
    if args.k_max is not None and args.k_max < 1:
        parser.error(f"--k-max must be at least 1, got {args.k_max}")
    torch.set_num_threads(args.threads)
    out = args.out or (Path(tempfile.mkdtemp(prefix="tta-")) if args.quick else RESULTS)
    out.mkdir(parents=True, exist_ok=True)
    for name in args.tasks:
        study = STUDY_TASKS[name]
        if args.k_max is not None:
            study = replace(study, schedule=replace(study.schedule, k_max=args.k_max))
        if study.needs_data_dir and not args.data_dir:
            print(f"skipping {name}: it needs MNIST (--data-dir or WEIGHTCAST_DATA)", file=sys.stderr)
            continue
        kwargs = dict(seeds=1, lrs={"sgd": (0.03,), "adamw": (3e-3,)}, budget=150) if args.quick else {}
        if args.lr_grid and not args.quick:
            kwargs["lrs"] = _lr_grids(parser, args.lr_grid)
        if args.budget and not args.quick:
            kwargs["budget"] = args.budget
        start = time.perf_counter()
        results = run_study(study, args.methods, seeds=kwargs.pop("seeds", args.seeds), data_dir=args.data_dir,
                            **kwargs)
        title = name + (" (held out from every zoo)" if study.held_out else "")
        table = markdown_table(summarise(results, study.goal), study.goal, title)
        print(table)
        print(f"{name}: {time.perf_counter() - start:.0f} s on {torch.get_num_threads()} thread(s)")
        write_csv(results, out / f"tta_{name}.csv", name)
        (out / f"tta_{name}.md").write_text(table)
        plot(results, study.goal, out / f"tta_{name}.png", title)
    print(f"results in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
