"""``weightcast zoo build|info``: build the default (or quick) zoo, and summarise a zoo directory."""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

from ..cli_common import HelpFormatter, existing_dir, positive_int
from ..data.mnist import ENV_VAR
from ..errors import InputError


def add_subparser(subparsers) -> None:
    """Add ``zoo`` with ``build`` and ``info`` to an argparse subparsers object; each sets ``func``."""
    zoo = subparsers.add_parser("zoo", help="build and inspect model zoos of training trajectories",
                                formatter_class=HelpFormatter)
    commands = zoo.add_subparsers(dest="zoo_command", required=True)
    build = commands.add_parser("build", help="build (or resume) the default zoo in a directory",
                                formatter_class=HelpFormatter,
                                description="Train the runs of the default (or quick) zoo that the directory does "
                                            "not hold yet. Interrupt it at any time and run the same command to "
                                            "resume; runs whose files are broken are rebuilt.")
    build.add_argument("--out", required=True, type=Path, help="zoo directory (created; an existing zoo is resumed)")
    build.add_argument("--data-dir", type=existing_dir, default=None,
                       help=f"directory with MNIST (or its mnist/ folder); default ${ENV_VAR}; "
                            "without either, the zoo has no MNIST runs")
    build.add_argument("--quick", action="store_true",
                       help="a tiny zoo for tests: 4 digits MLP runs and 1 tiny GPT run, no MNIST (a few seconds)")
    build.add_argument("--max-runs", type=positive_int, default=None, help="stop after this many new runs")
    build.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads")
    build.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    build.set_defaults(func=run_build, on_interrupt="interrupted; run the same command to resume")
    info = commands.add_parser("info", help="summarise a zoo: runs per task and arch, metrics, size",
                               formatter_class=HelpFormatter)
    info.add_argument("zoo_dir", type=Path, help="zoo directory")
    info.set_defaults(func=run_info)


def run_build(args: argparse.Namespace) -> int:
    import torch

    from .build import build_zoo
    from .spec import default_spec, quick_spec

    torch.set_num_threads(args.threads)
    data_dir = args.data_dir or os.environ.get(ENV_VAR)
    if args.quick and data_dir:
        print(f"note: --quick builds no MNIST runs; the data directory {data_dir} is not used",
              file=sys.stderr)
    if not args.quick and data_dir and not Path(data_dir).is_dir():
        raise InputError(f"${ENV_VAR}={data_dir} is not a directory; point it (or --data-dir) at the folder with "
                         "the MNIST idx gz files")
    specs = quick_spec() if args.quick else default_spec(mnist=bool(data_dir))
    if not args.quick and not data_dir:
        print(f"note: no --data-dir and no ${ENV_VAR}: building without MNIST runs", file=sys.stderr)
    start = time.perf_counter()
    manifest = build_zoo(args.out, specs, None if args.quick else data_dir, max_runs=args.max_runs,
                         progress=not args.no_progress)
    done = {spec.run_id for spec in specs} & {entry["id"] for entry in manifest["runs"]}
    print(f"{args.out}: {len(done)}/{len(specs)} runs of this spec done "
          f"({time.perf_counter() - start:.0f} s in this call)")
    return 0


def run_info(args: argparse.Namespace) -> int:
    from .spec import HELD_OUT
    from .store import read_manifest, verify_run

    root = args.zoo_dir
    runs = read_manifest(root, missing_ok=False)["runs"]
    broken = {e["id"]: problem for e in runs if (problem := verify_run(root, e)) is not None}
    groups = defaultdict(list)
    for entry in runs:
        if entry["id"] not in broken:
            groups[entry["spec"]["task"], entry["spec"]["arch"]].append(entry)
    size = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
    print(f"{root}: {len(runs) - len(broken)} runs, {size / 2**20:.1f} MiB")
    print(f"{'task':8} {'arch':8} {'runs':>4} {'params':>15} {'records':>7} {'val_acc median':>14} {'diverged':>8}")
    for (task, arch), entries in sorted(groups.items()):
        params = sorted({e["num_params"] for e in entries})
        accs = [e["final"]["val_acc"] for e in entries if e["final"]["val_acc"] is not None]
        acc = f"{statistics.median(accs):.3f}" if accs else "-"
        print(f"{task:8} {arch:8} {len(entries):4d} {f'{params[0]}..{params[-1]}':>15} "
              f"{entries[0]['num_records']:7d} {acc:>14} {sum(e['diverged'] for e in entries):8d}")
    print("held out (never in a zoo):", "; ".join(f"{h['task']}/{h['arch']} {h['model_kwargs']}" for h in HELD_OUT))
    if broken:
        for run_id, problem in sorted(broken.items()):
            print(f"broken run {run_id}: {problem}", file=sys.stderr)
        print(f"{len(broken)} broken runs (not counted above); rebuild them by running the `weightcast zoo build "
              f"--out {root}` command that built this zoo again", file=sys.stderr)
        return 1
    return 0
