"""The `freezetune` command: one module per subcommand, plus the demo; the only place argparse lives."""

from freezetune.cli.main import main

__all__ = ["main"]
