"""The exceptions a user sees as one line: bad input (exit code 2) and an interruption (128 + signal)."""

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


class Interrupted(KeyboardInterrupt):
    """Training stopped on SIGINT or SIGTERM after saving a resumable state (when it had a place to save).

    ``step`` is the step the state holds (None: stopped before training began); ``run`` the run
    folder that ``freezetune train --resume`` continues. The exit code is 128 + the signal's number.
    """

    def __init__(self, signum: int, step: int | None = None, run: str | None = None):
        super().__init__(signum, step, run)
        self.signum, self.step, self.run = signum, step, run

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def __str__(self) -> str:
        if self.run is None:
            return "interrupted"
        if self.step is None:  # before training began, or after it ended (while testing or saving)
            return f"interrupted; resume with: freezetune train --resume {self.run}"
        return f"interrupted at step {self.step}; resume with: freezetune train --resume {self.run}"


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'epochs'?)`` when one of ``known`` is close to ``name``, else ``""``."""
    close = difflib.get_close_matches(str(name), [str(k) for k in known], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
