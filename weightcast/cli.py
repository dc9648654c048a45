"""The ``weightcast`` command line.

    weightcast demo [--out DIR] [--seeds N] [--quick]   time-to-accuracy comparison on the embedded digits task
    weightcast info                                     how weightcast was built and which backends run here
    weightcast zoo build|info ...                       model zoos of training trajectories
    weightcast forecaster train|info ...                learned forecasters trained on a zoo
    weightcast ae train|eval ...                        weight autoencoder of the latent forecaster
    weightcast slim study|finetune ...                  dynamic width from pretrained weights
    weightcast prune zoo|train|apply ...                one-shot pruning and the mask hypernetwork
    weightcast lowrank train ...                        dynamical low-rank training (DLRT)

Each subcommand lives in a module exposing ``add_subparser(subparsers)``, listed in :data:`SUBCOMMANDS`; only the
module of the subcommand being run is imported, so ``weightcast --help`` needs no torch. To add a subcommand, add
one line there. Bad input (:class:`weightcast.errors.InputError`) is reported in one line, exit status 1.
"""
from __future__ import annotations

import argparse
import importlib
import json
import shlex
import sys
from pathlib import Path

from .cli_common import HelpFormatter, positive_int, run_command
from .errors import InputError

# name: (module, function adding the subparser, one-line help shown by `weightcast --help`)
SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "demo": ("weightcast.cli", "_add_demo", "AdamW, its alternatives and Forecast(AdamW) on the embedded digits task"),
    "info": ("weightcast.cli", "_add_info", "build and backend information"),
    "zoo": ("weightcast.zoo.cli", "add_subparser", "build and inspect model zoos of training trajectories"),
    "forecaster": ("weightcast.forecasters.cli", "add_subparser",
                   "train learned forecasters (farcast, wnn, nowcast) on a zoo"),
    "ae": ("weightcast.wsl.cli", "add_subparser", "weight autoencoder of the latent forecaster"),
    "slim": ("weightcast.slim.cli", "add_subparser", "dynamic width from pretrained weights"),
    "prune": ("weightcast.prune.cli", "add_subparser", "one-shot pruning and the mask hypernetwork"),
    "lowrank": ("weightcast.lowrank.cli", "add_subparser", "dynamical low-rank training (DLRT, the KLS integrator)"),
}


def _demo(args: argparse.Namespace) -> int:
    import torch

    from .study.demo import run_demo

    torch.set_num_threads(args.threads)
    if args.out.exists() and not args.out.is_dir():
        raise InputError(f"--out {args.out} is a file; pass a folder for the table, CSV and plot")
    print(run_demo(args.out, seeds=args.seeds or 1, quick=args.quick))
    return 0


def _info(args: argparse.Namespace) -> int:
    from . import build_info, ops

    info = build_info()
    info["backends_here"] = {"cpu": ops.available_backends("cpu")}
    print(json.dumps(info, indent=2, default=str))
    return 0


def _add_demo(sub) -> None:
    demo = sub.add_parser("demo", help=SUBCOMMANDS["demo"][2], formatter_class=HelpFormatter,
                          description="Time to accuracy of AdamW, schedule-free AdamW, an EMA and Forecast(AdamW) "
                                      "with the nowcaster on the embedded digits MLP task: a table, a CSV and a plot.")
    demo.add_argument("--out", type=Path, default=Path("weightcast-demo"), help="folder for table, CSV and plot")
    demo.add_argument("--seeds", type=positive_int, default=None,
                      help="measured seeds per method (default: 1)")
    demo.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads")
    demo.add_argument("--quick", action="store_true",
                      help="300 steps instead of 1500, judged at val acc 0.95 instead of 0.98")
    demo.set_defaults(func=_demo)


def _add_info(sub) -> None:
    info = sub.add_parser("info", help=SUBCOMMANDS["info"][2], formatter_class=HelpFormatter)
    info.set_defaults(func=_info)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``weightcast`` parser with every subcommand in full, or, given ``command``, with that one in full and
    the others as names only (their modules are not imported)."""
    parser = argparse.ArgumentParser(prog="weightcast", description="cheaper training by treating weights as data",
                                     formatter_class=HelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="{" + ",".join(SUBCOMMANDS) + "}")
    for name, (module, function, help_text) in SUBCOMMANDS.items():
        if command is None or name == command:
            getattr(importlib.import_module(module), function)(sub)
        else:
            sub.add_parser(name, help=help_text)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv[:1] if a in SUBCOMMANDS), "")
    args = build_parser(command).parse_args(argv)
    args.command_line = "weightcast " + shlex.join(argv)   # what a card records as the command that made it
    return run_command(args)


if __name__ == "__main__":
    raise SystemExit(main())
