"""An argparse parser whose every error is one line, with the closest flag when one was mistyped.

argparse's own errors print the usage block first, then the message: two lines or more. Here
an error is ``freezetune: error: MESSAGE (see freezetune COMMAND --help)`` and exit code 2,
like every other bad input.
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import NoReturn

from freezetune.core.errors import EXIT_BAD_INPUT, did_you_mean

# argparse reads "-1e-3" as a flag (its own pattern knows only "-1" and "-0.5"), so ``--lr -1e-3``
# failed with "expected one argument" instead of saying that the rate must be positive.
NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


class OneLineParser(argparse.ArgumentParser):
    """``error`` prints one line and exits 2; unknown flags get a "did you mean"; "-1e-3" is a number."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = NEGATIVE_NUMBER

    def error(self, message: str) -> NoReturn:
        print(f"freezetune: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            command = self._command_parser(parsed)
            command.error(unrecognized(extras, command))
        return parsed

    def _command_parser(self, parsed: argparse.Namespace) -> argparse.ArgumentParser:
        """The subcommand's parser (whose flags the extras were meant for), else this one."""
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                return action.choices.get(getattr(parsed, action.dest, None), self)
        return self


def unrecognized(extras: list[str], parser: argparse.ArgumentParser) -> str:
    """``unrecognized argument --batch-sise (did you mean '--batch-size'?)``"""
    flags = [option for action in parser._actions for option in action.option_strings if option.startswith("--")]
    first = next((e for e in extras if e.startswith("-")), extras[0])
    hint = did_you_mean(first.split("=", 1)[0], flags) if first.startswith("-") else ""
    return f"unrecognized argument {first}{hint}"
