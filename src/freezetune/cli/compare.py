"""``freezetune compare``: several plans x seeds (x learning rates) on the same data, side by side."""

from __future__ import annotations

import argparse

import freezetune
from freezetune.cli.flags import STRATEGY_HELP, add_config_flag, add_run_flags, pick
from freezetune.core.config import DataConfig, ModelConfig, TrainConfig

DEFAULT_STRATEGIES = ["full", "head_only", "lower_half", "alternate", "top_k:2"]


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "compare",
        help="train several plans x seeds (x learning rates) on the same data and compare them",
        description="Sweep plans, seeds and learning rates on one data set; finished runs are reused.",
    )
    add_config_flag(parser)
    parser.add_argument("--strategy", action="append",
                        help=f"a plan to compare; repeat the flag for each plan. {STRATEGY_HELP} "
                             f"(default: {', '.join(DEFAULT_STRATEGIES)})")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per plan and rate: 0..N-1 (default: 3)")
    parser.add_argument("--lr-grid", "--lr_grid", dest="lr_grid", default=None,
                        help="'auto' (each plan's default rate x 1/3, 1, 3) or rates like 1e-4,3e-4; chosen per "
                             "plan on the validation split (default: one rate, --lr or the plan's default)")
    parser.add_argument("--train-sizes", "--train_sizes", dest="train_sizes", default=None, metavar="SIZES",
                        help="learning curves: run every plan on stratified samples of these many training rows, "
                             "like 100,1000,all (default: one size, --max-train-rows or all rows)")
    parser.add_argument("--report", action=argparse.BooleanOptionalAction, default=True,
                        help="write report.html, report.md and plots/ into --output at the end (default: on; "
                             "`freezetune report OUTPUT` rebuilds it from the finished runs)")
    parser.add_argument("--data-seed", "--data_seed", dest="data_seed", type=int, default=0,
                        help="seed of the sampling and validation split shared by all runs (default: 0)")
    add_run_flags(parser)
    parser.add_argument("--output", default="runs/compare",
                        help="sweep folder; finished runs in it are reused (default: runs/compare)")
    parser.add_argument("--overwrite", action="store_true", help="retrain runs that already finished")
    parser.add_argument("--runs", default=None, metavar="FOLDER",
                        help="where the runs live (default: OUTPUT/runs); sweeps pointing at one folder share "
                             "every run with the same settings")
    parser.set_defaults(run=run)


def run(args) -> int:
    runs = freezetune.runs
    sizes = runs.parse_sizes(args.train_sizes)
    base = runs.RunSpec(data=pick(args, DataConfig), model=pick(args, ModelConfig), train=pick(args, TrainConfig))
    sweep = runs.Sweep(strategies=args.strategy or DEFAULT_STRATEGIES, base=base, seeds=list(range(args.seeds)),
                       lr_grid=args.lr_grid, data_seed=args.data_seed, output=args.output, overwrite=args.overwrite,
                       runs=args.runs)
    rows = runs.run_sizes(sweep, sizes)
    print(runs.results_table(rows))
    if rows and rows[0]["reported_split"] == "validation":
        print("note: no --test-data, so these are validation numbers (also used to pick rates): optimistic")
    print(f"results saved to {args.output}/results.{{txt,csv,json}}")
    if args.report:
        files = freezetune.report.build_report(args.output)
        print(f"report: {files.html}")
    return 0
