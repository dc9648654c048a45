"""The project's error type for bad input: a message that says what is wrong and what to do about it.

The ``weightcast`` command line prints such errors as one line (no traceback) and exits with status 1; code
calling the library can catch them as :class:`InputError` or as the :class:`ValueError` they also are
(:class:`MissingInputError`, for a missing file, also as :class:`FileNotFoundError`).
"""


class InputError(ValueError):
    """Bad input (a file, a directory, an argument): the message names it and says how to repair it."""


class MissingInputError(InputError, FileNotFoundError):
    """A file or directory the user named, or must build first, is missing: the message says how to make it.
    Also a :class:`FileNotFoundError`, so code that catches that keeps working."""
