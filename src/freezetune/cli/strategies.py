"""``freezetune strategies``: every strategy with its options and one line of doc."""

from __future__ import annotations

import freezetune


def add_parser(commands) -> None:
    parser = commands.add_parser("strategies", help="list every strategy with its options")
    parser.set_defaults(run=run)


def run(args) -> int:
    print(freezetune.runs.strategy_listing())
    return 0
