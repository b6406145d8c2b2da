"""The one exception type a user sees as a clear one-line message (exit code 2)."""

import difflib
import sys
from collections.abc import Iterable

EXIT_BAD_INPUT = 2


class FreezetuneError(Exception):
    """Bad input or an impossible request: the message says what is wrong and how to fix it."""


def report(error: FreezetuneError) -> int:
    """Print the error as the one line every command shows; return the exit code."""
    print(f"freezetune: error: {error}", file=sys.stderr)
    return EXIT_BAD_INPUT


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'epochs'?)`` when one of ``known`` is close to ``name``, else ``""``."""
    close = difflib.get_close_matches(str(name), [str(k) for k in known], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
