"""``weightcast ae train`` / ``ae eval``: train the weight autoencoder of the latent forecaster on a zoo, evaluate
autoencoders on a zoo's runs."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..cli_common import (HelpFormatter, existing_dir, nonnegative_float, nonnegative_int, positive_float,
                          positive_int)
from ..errors import InputError


def add_subparser(subparsers) -> None:
    """Add ``ae`` with ``train`` and ``eval`` to an argparse subparsers object (sets ``func``)."""
    ae = subparsers.add_parser("ae", help="weight autoencoder of the latent forecaster", formatter_class=HelpFormatter)
    commands = ae.add_subparsers(dest="ae_command", required=True)
    train = commands.add_parser("train", help="train on a zoo's trajectories (validation split by run)",
                                formatter_class=HelpFormatter,
                                description="Train the weight autoencoder on the train split of a zoo; the defaults "
                                            "reproduce the shipped autoencoder. Diverged runs are skipped.")
    train.add_argument("--zoo", required=True, type=existing_dir, help="zoo directory (weightcast zoo build)")
    train.add_argument("--out", required=True, type=Path,
                       help="weights file (.safetensors); the card goes next to it (.json)")
    train.add_argument("--token-size", type=positive_int, default=64, help="weights per token")
    train.add_argument("--latent", type=positive_int, default=8, help="latent size d per token (compression T/d)")
    train.add_argument("--hidden", type=positive_int, default=64, help="hidden width")
    train.add_argument("--mixer", choices=("mlp", "transformer"), default="mlp",
                       help="middle layers: per-token MLP, or a transformer block over windows of tokens")
    train.add_argument("--window", type=positive_int, default=16, help="tokens per attention window (transformer)")
    train.add_argument("--heads", type=positive_int, default=4,
                       help="attention heads (transformer; divides --hidden)")
    train.add_argument("--steps", type=positive_int, default=2000, help="training steps")
    train.add_argument("--lr", type=positive_float, default=2e-3, help="peak learning rate (one-cycle)")
    train.add_argument("--diff-weight", type=nonnegative_float, default=1.0,
                       help="weight of the snapshot-difference loss")
    train.add_argument("--seed", type=nonnegative_int, default=0, help="random seed")
    train.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    train.set_defaults(func=run_train)
    ev = commands.add_parser("eval", help="reconstruction and snapshot-difference errors on a zoo's runs",
                             formatter_class=HelpFormatter)
    ev.add_argument("autoencoders", nargs="+", type=Path, help="weights files (.safetensors)")
    ev.add_argument("--zoo", required=True, type=existing_dir, help="zoo directory, e.g. of held-out runs")
    ev.add_argument("--split", choices=("all", "val", "train"), default="all", help="runs to evaluate on")
    ev.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    ev.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    ev.set_defaults(func=run_eval)


def run_train(args: argparse.Namespace) -> int:
    import torch

    from ..weights_io import check_out_path
    from .autoencoder import save_autoencoder, train_autoencoder

    check_out_path(args.out)  # before the training, not after
    torch.set_num_threads(args.threads)
    model, card = train_autoencoder(args.zoo, token_size=args.token_size, latent=args.latent, hidden=args.hidden,
                                    steps=args.steps, lr=args.lr, diff_weight=args.diff_weight, seed=args.seed,
                                    progress=not args.no_progress, mixer=args.mixer, window=args.window,
                                    heads=args.heads)
    save_autoencoder(model, args.out, card)
    print(json.dumps(card["val"]["overall"], indent=2))
    print(f"saved {args.out} and its card")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from ..weights_io import atomic_write
    from .autoencoder import evaluate_on_zoo, load_autoencoder

    if args.out is not None and args.out.is_dir():
        raise InputError(f"--out {args.out} is a directory; pass a file name for the JSON results")
    autoencoders = {path.name: load_autoencoder(path) for path in args.autoencoders}  # every file checked first
    results = {"zoo": str(args.zoo), "split": args.split,
               "metrics": "relative L2 errors in the normalised space; diff@k: on the difference of two "
                          "snapshots k records apart",
               "autoencoders": {name: evaluate_on_zoo(model, args.zoo, args.split, progress=not args.no_progress)
                                for name, model in autoencoders.items()}}
    text = json.dumps(results, indent=2)
    if args.out:
        atomic_write(args.out, (text + "\n").encode())
    print(text)
    return 0
