"""``freezetune train``: fine-tune one plan and measure it."""

from __future__ import annotations

import freezetune
from freezetune.cli.flags import STRATEGY_HELP, add_config_flag, add_run_flags, pick
from freezetune.core.config import DataConfig, ModelConfig, TrainConfig


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "train",
        help="fine-tune one plan and measure it",
        description="Fine-tune one plan; write config.yaml, metrics.jsonl, metrics.json and plan.json to --output.",
    )
    add_config_flag(parser)
    parser.add_argument("--strategy", default="lower_half", help=f"{STRATEGY_HELP} (default: lower_half)")
    add_run_flags(parser)
    parser.add_argument("--output", help="run folder to write (refused if it already holds a run)")
    parser.add_argument("--overwrite", action="store_true", help="replace the run already in --output")
    parser.add_argument("--resume", metavar="RUN",
                        help="continue the interrupted run in this folder with its saved settings (flags given "
                             "must match them); the result equals an uninterrupted run")
    parser.set_defaults(run=run)


def run(args) -> int:
    runs = freezetune.runs
    spec = runs.RunSpec(strategy=args.strategy, data=pick(args, DataConfig), model=pick(args, ModelConfig),
                        train=pick(args, TrainConfig), output=args.output, overwrite=args.overwrite)
    result = runs.run_training(spec, resume=bool(args.resume))
    if not result.reports:  # launched data-parallel: rank 0 reports for all
        return 0
    row = result.summary()
    print(runs.run_table(row))
    if row["reported_split"] == "validation":
        print("note: no --test-data, so these are validation numbers (also used for model selection: optimistic)")
    if result.output:
        print(f"run saved to {result.output}")
    return 0
