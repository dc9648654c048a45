"""``weightcast lowrank train``: train a model with DLRT (KLS) or densely, write results, table and rank plot."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..cli_common import HelpFormatter, nonnegative_float, nonnegative_int, positive_float, positive_int
from ..data.mnist import ENV_VAR

TASKS = ("mnist", "digits")  # the classification tasks; "chars" (token sequences) is not supported


def momentum(text: str) -> float:
    """argparse type: SGD momentum, a number in [0, 1)."""
    value = nonnegative_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"{text} is out of range: pass a momentum in [0, 1)")
    return value


def add_subparser(subparsers) -> None:
    """Add ``lowrank train`` to an argparse subparsers object."""
    lowrank = subparsers.add_parser("lowrank", help="dynamical low-rank training (DLRT)", formatter_class=HelpFormatter)
    commands = lowrank.add_subparsers(dest="lowrank_command", required=True)
    tr = commands.add_parser("train", help="train with the rank-adaptive KLS integrator (or densely)",
                             formatter_class=HelpFormatter)
    tr.add_argument("--task", default="mnist", choices=TASKS,
                    help="weightcast classification task (lenet5-ref needs mnist's 28x28 images)")
    tr.add_argument("--data-dir", default=None, help=f"directory with MNIST; default ${ENV_VAR}")
    tr.add_argument("--model", default="lenet5-ref", choices=("lenet5-ref", "mlp"), help="model to train")
    tr.add_argument("--theta", type=nonnegative_float, nargs="+", default=[0.15],
                    help="truncation tolerances (relative), one run each")
    tr.add_argument("--width", type=positive_int, default=1024, help="hidden width of the mlp model")
    tr.add_argument("--dense", action="store_true", help="also train the dense model (the baseline)")
    tr.add_argument("--epochs", type=positive_int, default=20, help="passes over the training set")
    tr.add_argument("--lr", type=positive_float, default=0.05, help="learning rate")
    tr.add_argument("--batch-size", type=positive_int, default=128, help="training batch size")
    tr.add_argument("--base", default="sgd", choices=("sgd", "adamw"), help="base update of the factors")
    tr.add_argument("--momentum", type=momentum, default=0.0, help="SGD momentum in [0, 1) (--base sgd only)")
    tr.add_argument("--seeds", type=nonnegative_int, nargs="+", default=[0], help="random seeds, one run each")
    tr.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads")
    tr.add_argument("--out", type=Path, default=Path("lowrank-train"), help="folder for CSV, table and plot")
    tr.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    tr.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    import torch

    from ..data import get_task
    from ..results import write_results
    from ..errors import InputError
    from .train import check_task, plot_ranks, result_rows, train

    if args.base != "sgd" and args.momentum:
        raise InputError(f"--momentum applies to --base sgd only; drop it for --base {args.base}")
    torch.set_num_threads(args.threads)
    task = get_task(args.task, data_dir=args.data_dir)   # missing data: a MissingInputError, printed as one line
    check_task(task, args.model, args.batch_size)
    args.out.mkdir(parents=True, exist_ok=True)
    config = dict(task=args.task, model=args.model, width=args.width, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                  base=args.base, momentum=args.momentum)
    runs = list(args.theta) + ([None] if args.dense else [])
    results, rows, lines = {}, [], []
    csv = args.out / "lowrank_train.csv"
    for theta in runs:
        for seed in args.seeds:
            name = "dense" if theta is None else f"dlrt theta={theta}"
            res = train(task, args.model, theta=theta, width=args.width, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                        base=args.base, momentum=args.momentum, seed=seed, progress=not args.no_progress)
            results[f"{name} seed={seed}"] = res
            rows += result_rows(res, name, theta, seed, config)
            write_results(csv, rows, device="cpu")  # after every run, so an interrupted sweep keeps its runs
            lines.append(_table_line(name, seed, res))
    table = _table_header(args) + "\n".join(lines) + "\n"
    (args.out / "lowrank_train.md").write_text(table)
    print(table)
    if plot_ranks(results, args.out / "lowrank_ranks.png"):
        print(f"plot: {args.out / 'lowrank_ranks.png'}")
    print(f"results: {csv}")
    return 0


def _table_header(args) -> str:
    return (f"{args.model} on {args.task}: {args.base} lr {args.lr}, batch {args.batch_size}, {args.epochs} epochs; "
            "test accuracy after the last epoch; compression = 1 - params / dense params of the weight matrices "
            "(reference: U, S; full: U, S, V; biases not counted)\n\n"
            "| run | seed | ranks | test acc | params (ref) | compression (ref) | params (full) | "
            "compression (full) | fwd MFLOP (full) |\n|---|---|---|---|---|---|---|---|---|\n")


def _table_line(name: str, seed: int, res) -> str:
    c = res.counts
    ranks = "/".join(str(r) for r in res.ranks[-1][1].values()) if res.ranks else "dense"
    acc = res.epochs[-1]["test_acc"]
    return (f"| {name} | {seed} | {ranks} | {100 * acc:.2f}% | {c['params_reference']:,} | "
            f"{100 * (1 - c['params_reference'] / c['dense_params']):.1f}% | {c['params_full']:,} | "
            f"{100 * (1 - c['params_full'] / c['dense_params']):.1f}% | {c['flops_full'] / 1e6:.2f} |")
