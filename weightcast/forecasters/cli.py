"""``weightcast forecaster train|info``: meta-train a learned forecaster on a zoo, or show a forecaster file's card.

    weightcast forecaster train --kind farcast|wnn|nowcast|nowcast-graph --zoo DIR --out FILE [--steps N] ...
    weightcast forecaster info FILE

``train`` writes FILE (safetensors) and FILE with a ``.json`` suffix (the card: zoo, split, steps, losses, date,
command). The shipped defaults (weightcast/forecasters/weights/) were made with the commands in their cards.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..cli_common import (HelpFormatter, existing_dir, nonnegative_float, nonnegative_int, positive_float,
                          positive_int)


# options that apply to some kinds only: flag -> (argparse dest, the kinds, its default for them). They default to
# None in argparse, so that one given for another kind is refused instead of silently ignored.
KIND_OPTIONS = {"--max-horizon": ("max_horizon", ("farcast", "wnn"), 6),
                "--reg": ("reg", ("farcast",), 0.1),
                "--elements": ("elements", ("farcast", "wnn", "nowcast"), 2048),
                "--k-max": ("k_max", ("nowcast", "nowcast-graph"), 32),
                "--spacings": ("spacings", ("nowcast", "nowcast-graph"), [10, 20, 40]),
                "--rounds": ("rounds", ("nowcast-graph",), 2),
                "--compare": ("compare", ("nowcast-graph",), None),
                "--held-out-zoo": ("held_out_zoo", ("nowcast-graph",), None)}


def _default(flag: str) -> str:
    """The default of a :data:`KIND_OPTIONS` flag as --help shows it."""
    default = KIND_OPTIONS[flag][2]
    return " ".join(map(str, default)) if isinstance(default, list) else str(default)


def _kind_options(args: argparse.Namespace) -> None:
    """Refuse (InputError) the :data:`KIND_OPTIONS` given for a kind they do not apply to; fill in the others'
    defaults."""
    from ..errors import InputError

    wrong = [flag for flag, (dest, kinds, _) in KIND_OPTIONS.items()
             if getattr(args, dest) is not None and args.kind not in kinds]
    if wrong:
        raise InputError(f"{', '.join(wrong)} do{'es' if len(wrong) == 1 else ''} not apply to --kind {args.kind}; "
                         "drop " + ("it" if len(wrong) == 1 else "them") + " (`weightcast forecaster train --help` "
                         "says which kinds each option is for)")
    for dest, _, default in KIND_OPTIONS.values():
        if getattr(args, dest) is None:
            setattr(args, dest, default)


def _train(args: argparse.Namespace) -> int:
    import torch

    from ..weights_io import check_out_path
    from .train import TrainConfig, save_trained, train

    check_out_path(args.out)  # before the training, not after
    _kind_options(args)
    if args.kind == "nowcast":
        from .nowcast_train import train_from_args

        return train_from_args(args)
    if args.kind == "nowcast-graph":
        from .nowcast_graph_train import train_from_args as train_graph_from_args

        return train_graph_from_args(args)
    torch.set_num_threads(args.threads)
    cfg = TrainConfig(kind=args.kind, window=args.window, max_horizon=args.max_horizon, steps=args.steps,
                      samples_per_batch=args.samples, elements=args.elements, lr=args.lr, reg=args.reg,
                      hidden=args.hidden, seed=args.seed)
    command = args.command_line if args.record_command else None
    config, tensors, card = train(args.zoo, cfg, progress=not args.no_progress, command=command)
    save_trained(args.out, args.kind, config, tensors, card)
    print(json.dumps(card["final"]), f"-> {args.out}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from ..weights_io import read_card

    print(json.dumps(read_card(args.file), indent=1, sort_keys=True))
    return 0


def add_subparser(subparsers) -> None:
    """Add ``forecaster train`` and ``forecaster info`` to the ``weightcast`` command line."""
    parser = subparsers.add_parser("forecaster", formatter_class=HelpFormatter,
                                   help="train learned forecasters (farcast, wnn, nowcast, nowcast-graph) on a zoo")
    sub = parser.add_subparsers(dest="forecaster_command", required=True)
    tr = sub.add_parser("train", help="meta-train a forecaster on a zoo's trajectories", formatter_class=HelpFormatter,
                        description="Meta-train a learned forecaster on the train split of a zoo (split by run) and "
                                    "write its weights and card. farcast/wnn: the zoo's runs must hold at "
                                    "least window + max-horizon snapshots; nowcast: a window of states --spacings "
                                    "steps apart (multiples of the runs' record interval), horizons up to --k-max "
                                    "spacings (nowcast-graph: likewise, on whole networks). Diverged runs are "
                                    "skipped.")
    tr.add_argument("--kind", required=True, choices=["farcast", "wnn", "nowcast", "nowcast-graph"],
                    help="forecaster to train")
    tr.add_argument("--zoo", required=True, type=existing_dir, help="zoo directory (weightcast zoo build --out DIR)")
    tr.add_argument("--out", required=True, type=Path, help="weights file (.safetensors); the card goes beside it")
    tr.add_argument("--window", type=positive_int, default=5, help="snapshots per window (the optimizer's window)")
    tr.add_argument("--max-horizon", type=positive_int, default=None,
                    help="farcast/wnn: longest horizon, in record intervals (nowcast: --k-max); default "
                         f"{_default('--max-horizon')}")
    tr.add_argument("--steps", type=positive_int, default=600, help="optimizer steps of the meta-training")
    tr.add_argument("--samples", type=positive_int, default=16, help="(run, window, horizon) samples per batch")
    tr.add_argument("--elements", type=positive_int, default=None,
                    help=f"farcast/wnn/nowcast: elements drawn per sample; default {_default('--elements')}")
    tr.add_argument("--lr", type=positive_float, default=1e-2, help="Adam learning rate (cosine schedule)")
    tr.add_argument("--reg", type=nonnegative_float, default=None,
                    help=f"farcast: weight of the first-order-optimality term; default {_default('--reg')}")
    tr.add_argument("--hidden", type=positive_int, default=16, help="wnn, nowcast, nowcast-graph: hidden units per layer")
    tr.add_argument("--seed", type=nonnegative_int, default=0, help="random seed")
    tr.add_argument("--k-max", type=positive_int, default=None,
                    help=f"nowcast(-graph): horizons 1..K record intervals; default {_default('--k-max')}")
    tr.add_argument("--rounds", type=positive_int, default=None, help=f"nowcast-graph: message-passing rounds; default {_default('--rounds')}")
    tr.add_argument("--compare", type=Path, default=None,
                    help="nowcast-graph: a nowcast file scored beside it in the card (default: the shipped one)")
    tr.add_argument("--held-out-zoo", type=Path, default=None,
                    help="nowcast-graph: a zoo of held-out architectures scored in the card (built if absent)")
    tr.add_argument("--spacings", type=positive_int, nargs="+", default=None,
                    help="nowcast(-graph): record spacings (steps) the windows are sampled at; default "
                         f"{_default('--spacings')}")
    tr.add_argument("--threads", type=positive_int, default=1, help="torch threads")
    tr.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    tr.add_argument("--no-record-command", dest="record_command", action="store_false",
                    help="leave the command line out of the card")
    tr.set_defaults(func=_train)
    info = sub.add_parser("info", help="print the card of a forecaster file", formatter_class=HelpFormatter)
    info.add_argument("file", type=Path, help="weights file (.safetensors)")
    info.set_defaults(func=_info)
