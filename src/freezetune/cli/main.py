"""The ``freezetune`` command: the parser of every subcommand, config files, and the one error line.

Each subcommand is a module of this package with ``add_parser`` and ``run``. They reach the
library through ``freezetune``'s lazy face (``freezetune.runs...``) at run time, so ``--help``
and ``--version`` never import torch. Every user error is one line on stderr and exit code 2;
nothing is written before the inputs are known to be good.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

import freezetune
from freezetune.cli import compare, export, inspect, plan, predict, retention, score, serve, strategies, train
from freezetune.cli import report as report_command  # `report` is the error printer below
from freezetune.cli.flags import config_values
from freezetune.cli.parser import OneLineParser
from freezetune.core.errors import FreezetuneError, Interrupted, report

log = logging.getLogger("freezetune")

COMMANDS = (strategies, inspect, train, compare, report_command, predict, export, plan, retention, score, serve)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="freezetune",
        description="Decide where to fine-tune a pretrained transformer, then fine-tune there.",
    )
    parser.add_argument("--version", action="version", version=f"freezetune {freezetune.__version__}")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"),
                        help="how much to log on stderr (default: info)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.add_parser(commands)
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "resume", None):
        if args.output and Path(args.output) != Path(args.resume):
            raise FreezetuneError("--resume continues the run in its own folder; drop --output")
        args.config = args.config or str(Path(args.resume) / "config.yaml")
        argv = [*(argv or sys.argv[1:]), "--output", args.resume]
    if getattr(args, "config", None):
        subparser = parser._subparsers._group_actions[0].choices[args.command]  # type: ignore[union-attr]
        subparser.set_defaults(**config_values(args.config, subparser))
        resume_config = args.config if getattr(args, "resume", None) else None
        args = parser.parse_args(argv)
        args.config = args.config or resume_config
    return args


def _setup_logging(level: str) -> None:
    logging.basicConfig(format="%(message)s", stream=sys.stderr)
    log.setLevel(level.upper())
    import transformers  # only once a command runs: --help stays free of it

    transformers.logging.set_verbosity_error()


def main(argv: list[str] | None = None) -> int:
    # SIGTERM stops like Ctrl-C (a line and an exit code, not a silent death); during training the loop
    # takes both signals over to finish the step and save (training/interrupts.py).
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    try:
        args = parse_args(argv)
        _setup_logging(args.log_level)
        return args.run(args)
    except FreezetuneError as error:
        return report(error)
    except Interrupted as stop:
        print(f"freezetune: {stop}", file=sys.stderr)
        return stop.exit_code
    except KeyboardInterrupt:
        print("freezetune: interrupted", file=sys.stderr)
        return 130
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def _terminate(signum, frame) -> None:
    raise Interrupted(signum)


if __name__ == "__main__":
    sys.exit(main())
