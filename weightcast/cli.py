"""The ``weightcast`` command line.

    weightcast demo [--out DIR] [--seeds N] [--quick]   time-to-accuracy comparison on the embedded digits task
    weightcast info                                     how weightcast was built and which backends run here
    weightcast zoo build|info ...                       model zoos of training trajectories
    weightcast ae train --zoo DIR --out FILE            weight autoencoder of the latent forecaster

Subcommands come from modules exposing ``add_subparser(subparsers)``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def _demo(args: argparse.Namespace) -> int:
    import torch

    from .study import STUDY_TASKS, markdown_table, plot, run_study, summarise, write_csv

    torch.set_num_threads(args.threads)
    study = STUDY_TASKS["digits-mlp"]
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    extra = dict(lrs={"sgd": (0.03,), "adamw": (3e-3,)}, budget=200) if args.quick else {}
    results = run_study(study, seeds=1 if args.quick else args.seeds, **extra)
    table = markdown_table(summarise(results, study.goal), study.goal, "digits-mlp (embedded scikit-learn digits)")
    print(table)
    write_csv(results, args.out / "tta_digits-mlp.csv", "digits-mlp")
    (args.out / "tta_digits-mlp.md").write_text(table)
    if plot(results, study.goal, args.out / "tta_digits-mlp.png", "digits-mlp"):
        print(f"plot: {args.out / 'tta_digits-mlp.png'}")
    print(f"done in {time.perf_counter() - start:.0f} s; results in {args.out}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from . import build_info, ops

    info = build_info()
    info["backends_here"] = {"cpu": ops.available_backends("cpu")}
    print(json.dumps(info, indent=2, default=str))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="weightcast", description="cheaper training by treating weights as data")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="compare SGD, ForecastSGD and baselines on the embedded digits task")
    demo.add_argument("--out", type=Path, default=Path("weightcast-demo"), help="folder for table, CSV and plot")
    demo.add_argument("--seeds", type=int, default=3)
    demo.add_argument("--threads", type=int, default=1)
    demo.add_argument("--quick", action="store_true", help="one seed, one learning rate, 200 steps")
    demo.set_defaults(func=_demo)
    info = sub.add_parser("info", help="build and backend information")
    info.set_defaults(func=_info)
    from .zoo.cli import add_subparser as add_zoo

    add_zoo(sub)
    from .forecasters.cli import add_subparser as add_forecaster

    add_forecaster(sub)
    from .wsl.cli import add_subparser as add_ae

    add_ae(sub)
    from .lowrank.cli import add_subparser as add_lowrank

    add_lowrank(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
