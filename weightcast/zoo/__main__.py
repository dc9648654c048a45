"""``python -m weightcast.zoo build|info ...``: the ``weightcast zoo`` command without the package CLI."""
import argparse
import sys

from ..cli_common import run_command
from .cli import add_subparser


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m weightcast.zoo")
    add_subparser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["zoo", *(sys.argv[1:] if argv is None else argv)])
    return run_command(args, parser.prog)


if __name__ == "__main__":
    sys.exit(main())
