"""The dynamic-width study (weightcast.slim.study) for LeNet-5 (+BN) and the small ResNet-18 on MNIST: accuracy at
every width for naive slicing, full and residual weight generation, slimmable fine-tuning and from-scratch
training, with the compute each took. Results: benchmarks/results/slim/slim_<model>.{csv,md,png}.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/slim_study.py --data-dir ../shared/data
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS  # noqa: E402

from weightcast.slim.cli import add_subparser  # noqa: E402

if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="slim_study")
    add_subparser(parser.add_subparsers(dest="command", required=True))
    out = [] if "--out" in sys.argv else ["--out", str(RESULTS / "slim")]
    args = parser.parse_args(["slim", "study", *out, *sys.argv[1:]])
    raise SystemExit(args.func(args))
