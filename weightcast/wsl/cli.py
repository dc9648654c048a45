"""``weightcast ae train`` / ``ae eval``: train the weight autoencoder of the latent forecaster on a zoo, evaluate
autoencoders on a zoo's runs."""
from __future__ import annotations

import argparse
import json


def add_subparser(subparsers) -> None:
    """Add ``ae`` with ``train`` and ``eval`` to an argparse subparsers object (sets ``func``)."""
    ae = subparsers.add_parser("ae", help="weight autoencoder of the latent forecaster")
    commands = ae.add_subparsers(dest="ae_command", required=True)
    train = commands.add_parser("train", help="train on a zoo's trajectories (validation split by run)")
    train.add_argument("--zoo", required=True, help="zoo directory (weightcast zoo build)")
    train.add_argument("--out", required=True, help="weights file (.safetensors); the card goes next to it (.json)")
    train.add_argument("--token-size", type=int, default=64)
    train.add_argument("--latent", type=int, default=8, help="latent size d per token (compression T/d)")
    train.add_argument("--hidden", type=int, default=64,
                       help="hidden width (default 64; the defaults reproduce the shipped autoencoder)")
    train.add_argument("--mixer", choices=("mlp", "transformer"), default="mlp",
                       help="middle layers: per-token MLP, or a transformer block over windows of tokens")
    train.add_argument("--window", type=int, default=16, help="tokens per attention window (transformer)")
    train.add_argument("--heads", type=int, default=4, help="attention heads (transformer; divides --hidden)")
    train.add_argument("--steps", type=int, default=2000)
    train.add_argument("--lr", type=float, default=2e-3)
    train.add_argument("--diff-weight", type=float, default=1.0, help="weight of the snapshot-difference loss")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    train.add_argument("--no-progress", action="store_true")
    train.set_defaults(func=run_train)
    ev = commands.add_parser("eval", help="reconstruction and snapshot-difference errors on a zoo's runs")
    ev.add_argument("autoencoders", nargs="+", help="weights files (.safetensors)")
    ev.add_argument("--zoo", required=True, help="zoo directory, e.g. of held-out runs")
    ev.add_argument("--split", choices=("all", "val", "train"), default="all")
    ev.add_argument("--out", default=None, help="write the results as JSON here")
    ev.set_defaults(func=run_eval)


def run_train(args: argparse.Namespace) -> int:
    import torch

    from .autoencoder import save_autoencoder, train_autoencoder

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
    from pathlib import Path

    from .autoencoder import evaluate_on_zoo, load_autoencoder

    results = {"zoo": str(args.zoo), "split": args.split,
               "metrics": "relative L2 errors in the normalised space; diff@k: on the difference of two "
                          "snapshots k records apart",
               "autoencoders": {Path(p).name: evaluate_on_zoo(load_autoencoder(p), args.zoo, args.split)
                                for p in args.autoencoders}}
    text = json.dumps(results, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)
    return 0
