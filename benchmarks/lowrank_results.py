"""Regenerate benchmarks/results/lowrank/: the LeNet-5 MNIST table (DLRT at several theta and dense) and the
per-step time / peak memory comparison (dense vs three-pass vs one-pass KLS).

    python benchmarks/lowrank_results.py [--epochs 3] [--long-epochs 8] [--seeds 0] [--more-seeds 1 2]
                                         [--data-dir ../shared/data]

The table runs ``weightcast lowrank train --dense --theta 0.15 0.09 0.2 0.3`` (SGD lr 0.05, batch 128, the DLRT
paper's settings except the number of epochs: 20 in the paper) and writes lowrank_train.{csv,md} and
lowrank_ranks.png; then benchmarks/lowrank_step.py writes step_cpu.{csv,md}; then theta = 0.15 alone is trained for
``--long-epochs`` epochs into theta0.15-long/, and theta = 0.15 and dense again for ``--more-seeds`` (``--epochs``
epochs) into theta0.15-seeds/. All run on one CPU thread.
"""
from __future__ import annotations

import argparse

import lowrank_step
from common import RESULTS
from weightcast.cli import main as weightcast_main

THETAS = ("0.15", "0.09", "0.2", "0.3")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", nargs="+", default=["0"])
    parser.add_argument("--data-dir", default=None, help="directory with MNIST; default $WEIGHTCAST_DATA")
    parser.add_argument("--long-epochs", type=int, default=8, help="epochs of the longer theta = 0.15 run (0: none)")
    parser.add_argument("--more-seeds", nargs="*", default=["1", "2"], help="seeds of the theta = 0.15 / dense repeat")
    parser.add_argument("--skip-table", action="store_true", help="skip the table (the first part)")
    args = parser.parse_args()
    data = ["--data-dir", args.data_dir] if args.data_dir else []
    if not args.skip_table:
        weightcast_main(["lowrank", "train", *data, "--theta", *THETAS, "--dense", "--epochs", str(args.epochs),
                         "--seeds", *args.seeds, "--out", str(RESULTS / "lowrank")])
    lowrank_step.main([])
    if args.long_epochs:
        weightcast_main(["lowrank", "train", *data, "--theta", "0.15", "--epochs", str(args.long_epochs),
                         "--seeds", *args.seeds, "--out", str(RESULTS / "lowrank" / "theta0.15-long")])
    if args.more_seeds:
        weightcast_main(["lowrank", "train", *data, "--theta", "0.15", "--dense", "--epochs", str(args.epochs),
                         "--seeds", *args.more_seeds, "--out", str(RESULTS / "lowrank" / "theta0.15-seeds")])


if __name__ == "__main__":
    main()
