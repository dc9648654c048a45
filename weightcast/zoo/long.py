"""Build the long-trajectory zoo (:func:`weightcast.zoo.spec.long_spec`), resumably:

    python -m weightcast.zoo.long --out zoos/long --data-dir ../shared/data [--max-runs N] [--threads 1]

Runs already in the directory's manifest are skipped, so an interrupted build resumes where it stopped.
"""
from __future__ import annotations

import argparse
import os
import time

from ..data.mnist import ENV_VAR


def main(argv: list[str] | None = None) -> int:
    import torch

    from .build import build_zoo
    from .spec import long_spec

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="zoo directory (created; an existing zoo is resumed)")
    parser.add_argument("--data-dir", default=os.environ.get(ENV_VAR), help="MNIST directory (without: no MNIST runs)")
    parser.add_argument("--max-runs", type=int, default=None, help="stop after this many new runs")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    specs = long_spec(mnist=bool(args.data_dir))
    start = time.perf_counter()
    manifest = build_zoo(args.out, specs, args.data_dir, max_runs=args.max_runs, progress=not args.no_progress)
    done = {spec.run_id for spec in specs} & {entry["id"] for entry in manifest["runs"]}
    print(f"{args.out}: {len(done)}/{len(specs)} runs of the long spec done "
          f"({time.perf_counter() - start:.0f} s in this call)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
