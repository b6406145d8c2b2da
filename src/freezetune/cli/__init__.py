"""The `freezetune` command: one module per subcommand, plus the demo; the only place argparse lives.

The entry point is ``freezetune.cli.main:main``. It is not imported here, so that
``python -m freezetune.cli.main`` runs the module once, without a runpy warning.
"""
