"""The one exception type a user sees as a clear one-line message (exit code 2)."""

import sys

EXIT_BAD_INPUT = 2


class FreezetuneError(Exception):
    """Bad input or an impossible request: the message says what is wrong and how to fix it."""


def report(error: FreezetuneError) -> int:
    """Print the error as the one line every command shows; return the exit code."""
    print(f"freezetune: error: {error}", file=sys.stderr)
    return EXIT_BAD_INPUT
