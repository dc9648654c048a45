"""What every ``weightcast`` subcommand shares: argument types checked by argparse, the help formatter (defaults
shown), and the top-level handling of user errors and Ctrl-C.

Use :func:`positive_int` (and friends) as ``type=`` of every count, size or step option, so that a bad value is
an argparse error before anything runs (``weightcast zoo build: error: argument --max-runs: -3 is out of range:
pass an integer >= 1``); build subparsers with ``formatter_class=HelpFormatter`` (``DocstringHelpFormatter`` for a module docstring as
description).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default in ``--help`` (not for flags, nor for None, whose meaning the help text
    gives)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or isinstance(action.default, bool):
            return action.help or ""
        return super()._get_help_string(action)


class DocstringHelpFormatter(HelpFormatter, argparse.RawDescriptionHelpFormatter):
    """:class:`HelpFormatter` that keeps the description as written (for a module docstring)."""


def _number(text: str, parse, lowest: float, inclusive: bool):
    try:
        value = parse(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if parse is int else 'a number'}") \
            from None
    if not math.isfinite(value) or value < lowest or (value == lowest and not inclusive):
        bound = f">= {lowest:g}" if inclusive else f"> {lowest:g}"
        what = "an integer" if parse is int else "a finite number"
        raise argparse.ArgumentTypeError(f"{text} is out of range: pass {what} {bound}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _number(text, int, 1, True)


def nonnegative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _number(text, int, 0, True)


def positive_count(text: str) -> int:
    """argparse type: a whole number >= 1, also written as a float (``1e6``, ``11e6``)."""
    value = _number(text, float, 1, True)
    if value != int(value):
        raise argparse.ArgumentTypeError(f"{text} is not a whole number")
    return int(value)


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    return _number(text, float, 0, False)


def nonnegative_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    return _number(text, float, 0, True)


def block_size(text: str) -> int | None:
    """argparse type of a Fisher block size (:func:`weightcast.prune.fisher.prune_in_stages`): "full" -> None
    (the full Fisher), else an integer >= 1."""
    if text == "full":
        return None
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"'full' or a positive integer, got {text!r}")
    return int(text)


def existing_dir(text: str) -> Path:
    """argparse type: a directory that exists."""
    path = Path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is not a directory" + ("" if path.exists() else " (missing)"))
    return path


def run_command(args: argparse.Namespace, prog: str = "weightcast") -> int:
    """Run ``args.func(args)``: a :class:`weightcast.errors.InputError` (bad input the user can fix) is printed
    as one line, exit status 1; Ctrl-C prints ``args.on_interrupt`` (if the subcommand set one), exit status 130.
    Other exceptions are bugs and keep their traceback (``WEIGHTCAST_TRACEBACK=1`` shows it for input errors
    too). Warnings (e.g. a skipped run) are printed as ``prog: warning: message``."""
    import warnings

    from .errors import InputError

    plain = warnings.formatwarning
    warnings.formatwarning = lambda message, category, *_, **__: f"{prog}: warning: {message}\n"
    try:
        return int(args.func(args) or 0)
    except InputError as exc:
        if os.environ.get("WEIGHTCAST_TRACEBACK"):
            raise
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\n{prog}: {getattr(args, 'on_interrupt', 'interrupted')}", file=sys.stderr)
        return 130
    finally:
        warnings.formatwarning = plain


def clip(text: str, limit: int = 300) -> str:
    """``text`` cut to ``limit`` characters, marked with "..." where cut."""
    return text if len(text) <= limit else text[:limit] + " ..."


def state_misfit(what: str, state_keys, model_keys, exc: Exception) -> str:
    """Why a state_dict does not load into a model, and what to do, for an InputError: ``what`` says which file
    does not fit which model (e.g. "--state F does not fit --model M with --model-kwargs K"), ``state_keys`` are
    the file's keys (a pruned state's ``<tensor>_orig`` / ``<tensor>_mask`` read as ``<tensor>``), ``model_keys``
    the model's, ``exc`` the loading's error. The same tensors: their shapes differ (other model arguments or
    task); a common prefix too many (a wrapped model's); no key in common (a checkpoint wrapping the state_dict,
    or another model); else the keys each side lacks."""
    names = {k.removesuffix("_orig").removesuffix("_mask") for k in state_keys}
    own = set(model_keys)
    missing, unexpected = sorted(own - names), sorted(names - own)
    if not missing and not unexpected:
        return f"{what} ({clip(' '.join(str(exc).split()))}); pass the --model-kwargs and --task it was trained with"
    for prefix in sorted({k.split(".", 1)[0] + "." for k in unexpected if "." in k}):
        if {k.removeprefix(prefix) for k in names} == own:
            return (f"{what}: its keys carry the prefix {prefix!r} (a wrapped model's, e.g. DataParallel's); save "
                    f"the state_dict without it: {{k.removeprefix({prefix!r}): v for k, v in state.items()}}")
    if not names & own:
        return (f"{what}: none of its keys ({_few(sorted(state_keys))}) is a tensor of the model "
                f"({_few(sorted(own))}); if the file wraps the state_dict (e.g. {{'model': ..., 'epoch': ...}}), "
                "save the state_dict itself, else pass the --model it was trained as")
    differ = [f"it has keys the model lacks ({_few(unexpected)})"] * bool(unexpected)
    differ += [f"it lacks the model's keys ({_few(missing)})"] * bool(missing)
    return (f"{what}: {' and '.join(differ)}; pass the --model and --model-kwargs it was trained with, or that "
            "model's own state_dict")


def _few(keys: list[str], shown: int = 4) -> str:
    return ", ".join(keys[:shown]) + (", ..." if len(keys) > shown else "")
