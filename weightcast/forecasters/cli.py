"""``weightcast forecaster train|info``: meta-train a learned forecaster on a zoo, or show a forecaster file's card.

    weightcast forecaster train --kind farcast|wnn --zoo DIR --out FILE [--steps N] [--reg R] [--hidden H] ...
    weightcast forecaster info FILE

``train`` writes FILE (safetensors) and FILE with a ``.json`` suffix (the card: zoo, split, steps, losses, date,
command). The shipped defaults (weightcast/forecasters/weights/) were made with the commands in their cards.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path


def _train(args: argparse.Namespace) -> int:
    import torch

    if args.kind == "nowcast":
        from .nowcast_train import train_from_args

        return train_from_args(args)

    from .train import TrainConfig, save_trained, train

    torch.set_num_threads(args.threads)
    cfg = TrainConfig(kind=args.kind, window=args.window, max_horizon=args.max_horizon, steps=args.steps,
                      samples_per_batch=args.samples, elements=args.elements, lr=args.lr, reg=args.reg,
                      hidden=args.hidden, seed=args.seed)
    command = "weightcast " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if args.record_command else None
    config, tensors, card = train(args.zoo, cfg, progress=not args.no_progress, command=command)
    save_trained(args.out, args.kind, config, tensors, card)
    print(json.dumps(card["final"]), f"-> {args.out}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from .io import card_path

    path = card_path(args.file)
    if not path.exists():
        print(f"{args.file}: no card at {path}", file=sys.stderr)
        return 1
    print(path.read_text())
    return 0


def add_subparser(subparsers) -> None:
    """Add ``forecaster train`` and ``forecaster info`` to the ``weightcast`` command line."""
    parser = subparsers.add_parser("forecaster", help="train learned forecasters (farcast, wnn) on a zoo")
    sub = parser.add_subparsers(dest="forecaster_command", required=True)
    tr = sub.add_parser("train", help="meta-train a forecaster on a zoo's trajectories")
    tr.add_argument("--kind", required=True, choices=["farcast", "wnn", "nowcast"])
    tr.add_argument("--zoo", required=True, type=Path, help="zoo directory (weightcast zoo build --out DIR)")
    tr.add_argument("--out", required=True, type=Path, help="weights file (.safetensors); the card goes beside it")
    tr.add_argument("--window", type=int, default=5, help="snapshots per window (the optimizer's window)")
    tr.add_argument("--max-horizon", type=int, default=6, help="longest horizon, in record intervals")
    tr.add_argument("--steps", type=int, default=600, help="optimizer steps of the meta-training")
    tr.add_argument("--samples", type=int, default=16, help="(run, window, horizon) samples per batch")
    tr.add_argument("--elements", type=int, default=2048, help="elements drawn per sample")
    tr.add_argument("--lr", type=float, default=1e-2)
    tr.add_argument("--reg", type=float, default=0.1, help="farcast: weight of the first-order-optimality term")
    tr.add_argument("--hidden", type=int, default=16, help="wnn: hidden units per layer")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--k-max", type=int, default=32, help="nowcast: horizons 1..K record intervals, one output each")
    tr.add_argument("--spacings", type=int, nargs="+", default=[10, 20, 40], help="nowcast: record spacings (steps)")
    tr.add_argument("--threads", type=int, default=1, help="torch threads")
    tr.add_argument("--no-progress", action="store_true")
    tr.add_argument("--no-record-command", dest="record_command", action="store_false",
                    help="leave the command line out of the card")
    tr.set_defaults(func=_train)
    info = sub.add_parser("info", help="print the card of a forecaster file")
    info.add_argument("file", type=Path)
    info.set_defaults(func=_info)
