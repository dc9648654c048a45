"""The project's error type for bad input: a message that says what is wrong and what to do about it.

The ``weightcast`` command line prints such errors as one line (no traceback) and exits with status 1; code
calling the library can catch them as :class:`InputError` or as the :class:`ValueError` they also are
(:class:`MissingInputError`, for a missing file, also as :class:`FileNotFoundError`; :class:`UnknownNameError`, for
a name no registry has, also as :class:`KeyError`). Raise them where the input is checked, so that every caller,
the command line included, reports the same message; :func:`check_positive_int` is such a check.
"""


class InputError(ValueError):
    """Bad input (a file, a directory, an argument): the message names it and says how to repair it."""


class UnknownNameError(InputError, KeyError):
    """A name that no registry has (a task, a model, an optimizer): the message lists the known ones. Also a
    :class:`KeyError` (a lookup that missed), so code that catches that keeps working."""

    __str__ = Exception.__str__   # the message as it is (KeyError's quotes it)


class MissingInputError(InputError, FileNotFoundError):
    """A file or directory the user named, or must build first, is missing: the message says how to make it.
    Also a :class:`FileNotFoundError`, so code that catches that keeps working."""


def check_positive_int(name: str, value, allow_none: bool = False) -> None:
    """Raise ValueError (the message names ``name``) unless ``value`` is an int >= 1 (not a bool), or None where
    ``allow_none``."""
    if allow_none and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer{' or None' if allow_none else ''}, got {value!r}")
