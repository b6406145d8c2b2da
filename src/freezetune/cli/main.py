"""The ``freezetune`` command: inspect | strategies | train.

Flags are derived from the config dataclasses (config.py), so ``--help``, YAML keys and the
Python API never drift apart. Precedence: defaults < ``--config FILE.yaml`` < flags.
Every user error is one line on stderr and exit code 2; nothing is written before the
inputs are known to be good.
"""

from __future__ import annotations

import argparse
import logging
import sys
import types
import typing
from dataclasses import fields
from pathlib import Path

from freezetune.core.config import DataConfig, ModelConfig, TrainConfig, field_help
from freezetune.core.errors import FreezetuneError, report

log = logging.getLogger("freezetune")

STRATEGY_HELP = (
    "what trains, in the plan-spec grammar NAME[:VALUE][:KEY=VALUE...]: full, head_only, "
    "lower_half, alternate (blocks 0,2,4,... and embeddings frozen), top_k:2, depth:3, "
    "layers:0,3,10-12, attention|ffn|norm|bias (BitFit), lora:r=8:blocks=4,5, "
    "auto:semantic:budget=0.25 (scores blocks on the data and picks); options for all: "
    "embeddings=true, head=false, modules=attention+norm, lr_decay=2.6. Blocks are numbered "
    "from 0 at the input. `freezetune strategies` lists everything"
)


# ---------------------------------------------------------------------- flags from dataclasses
def _base_type(annotation) -> type:
    """``int | None`` -> int; ``str`` -> str."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return next(a for a in typing.get_args(annotation) if a is not type(None))
    return annotation


def _optional(kind: type):
    def convert(text: str):
        return None if text.lower() in ("none", "null") else kind(text)

    convert.__name__ = kind.__name__
    return convert


def add_dataclass_flags(parser: argparse.ArgumentParser, cls, title: str) -> None:
    group = parser.add_argument_group(title, cls.__doc__)
    hints = typing.get_type_hints(cls)
    for name, info in field_help(cls).items():
        kind = _base_type(hints[name])
        flag = f"--{name.replace('_', '-')}"
        choices = f"; one of {', '.join(info['choices'])}" if info.get("choices") else ""
        help_text = f"{info['help']} (default: {info['default']}{choices})".replace("%", "%%")  # argparse formats %
        if kind is bool:
            group.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, help=help_text)
        else:
            aliases = [f"--{name}"] if "_" in name else []  # YAML-style spelling works too
            group.add_argument(
                # "none" means None, except where it is one of the choices (--retention none)
                flag, *aliases, dest=name, type=kind if info.get("choices") else _optional(kind),
                choices=info.get("choices"), help=help_text,
                metavar=kind.__name__.upper(),
            )
        parser.set_defaults(**{name: info["default"]})


def add_run_flags(parser: argparse.ArgumentParser) -> None:
    """The data, model and training flags every training command shares."""
    add_dataclass_flags(parser, DataConfig, "data")
    add_dataclass_flags(parser, ModelConfig, "model")
    add_dataclass_flags(parser, TrainConfig, "training")


def _config_values(path: str, parser: argparse.ArgumentParser) -> dict:
    """Read a YAML config; its keys are the flags' names (dashes or underscores)."""
    import yaml

    file = Path(path)
    if not file.is_file():
        raise FreezetuneError(f"no such config file: {path}")
    try:
        values = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as error:
        raise FreezetuneError(f"{path} is not valid YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(values, dict):
        raise FreezetuneError(f"{path} must be a mapping of option: value")
    known = {a.dest for a in parser._actions}
    values = {str(k).replace("-", "_"): v for k, v in values.items()}
    unknown = sorted(set(values) - known - {"config"})
    if unknown:
        raise FreezetuneError(f"{path}: unknown key {unknown[0]!r}; keys are the flag names of `freezetune train --help`")
    return values


def _pick(namespace: argparse.Namespace, cls):
    return cls(**{f.name: getattr(namespace, f.name) for f in fields(cls)})


# ---------------------------------------------------------------------- commands
def cmd_strategies(args) -> int:
    from freezetune.strategies.registry import listing

    print(listing())
    return 0


def cmd_inspect(args) -> int:
    from freezetune.runs.inspect import inspect_model

    print(inspect_model(args.model, gguf_file=args.gguf_file, pooling=args.pooling, strategy=args.strategy))
    return 0


def cmd_train(args) -> int:
    from freezetune.measure.metrics import format_table
    from freezetune.runs.run import RunSpec, run_training

    spec = RunSpec(
        strategy=args.strategy,
        data=_pick(args, DataConfig),
        model=_pick(args, ModelConfig),
        train=_pick(args, TrainConfig),
        output=args.output,
        overwrite=args.overwrite,
    )
    result = run_training(spec, resume=bool(args.resume))
    row = result.summary()
    split = row["reported_split"]
    print(
        format_table(
            [row],
            [
                ("strategy", "strategy", ""),
                ("accuracy", f"{split} acc", ".3f"),
                ("macro_f1", "macro-F1", ".3f"),
                ("mcc", "MCC", ".3f"),
                ("trainable_params", "trainable", ","),
                ("trainable_pct", "%", ".2f"),
                ("time_per_epoch_s", "s/epoch", ".1f"),
                ("steady_step_s", "s/step", ".3f"),
                ("peak_memory_bytes", "peak mem", ","),
            ],
        )
    )
    if split == "validation":
        print("note: no --test-data, so these are validation numbers (also used for model selection: optimistic)")
    if result.output:
        print(f"run saved to {result.output}")
    return 0


def cmd_compare(args) -> int:
    from freezetune.runs.sweep import Sweep, results_table, run_sweep
    from freezetune.runs.run import RunSpec

    base = RunSpec(data=_pick(args, DataConfig), model=_pick(args, ModelConfig), train=_pick(args, TrainConfig))
    strategies = args.strategy or ["full", "head_only", "lower_half", "alternate", "top_k:2"]
    sweep = Sweep(strategies=strategies, base=base, seeds=list(range(args.seeds)), lr_grid=args.lr_grid,
                  data_seed=args.data_seed, output=args.output, overwrite=args.overwrite, runs=args.runs)
    rows = run_sweep(sweep)
    print(results_table(rows))
    if rows and rows[0]["reported_split"] == "validation":
        print("note: no --test-data, so accuracies are validation numbers (also used to pick rates): optimistic")
    print(f"results saved to {args.output}/results.{{txt,csv,json}}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="freezetune",
        description="Decide where to fine-tune a pretrained transformer, then fine-tune there.",
    )
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"),
                        help="how much to log on stderr (default: info)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    strategies = commands.add_parser("strategies", help="list every strategy with its options")
    strategies.set_defaults(run=cmd_strategies)

    inspect = commands.add_parser("inspect", help="show the model's units (embeddings, blocks 0..L-1, head) and sizes")
    add_dataclass_flags(inspect, ModelConfig, "model")
    inspect.add_argument("--strategy", default=None, help="also show what this plan spec would train")
    inspect.set_defaults(run=cmd_inspect)

    train = commands.add_parser(
        "train",
        help="fine-tune one plan and measure it",
        description="Fine-tune one plan; write config.yaml, metrics.jsonl, metrics.json and plan.json to --output.",
    )
    train.add_argument("--config", help="YAML file whose keys are these flags' names; flags override it")
    train.add_argument("--strategy", default="lower_half", help=f"{STRATEGY_HELP} (default: lower_half)")
    add_run_flags(train)
    train.add_argument("--output", help="run folder to write (refused if it already holds a run)")
    train.add_argument("--overwrite", action="store_true", help="replace the run already in --output")
    train.add_argument("--resume", metavar="RUN",
                       help="continue the interrupted run in this folder with its saved settings (flags given "
                            "must match them); the result equals an uninterrupted run")
    train.set_defaults(run=cmd_train)

    compare = commands.add_parser(
        "compare",
        help="train several plans x seeds (x learning rates) on the same data and compare them",
        description="Sweep plans, seeds and learning rates on one data set; finished runs are reused.",
    )
    compare.add_argument("--config", help="YAML file whose keys are these flags' names; flags override it")
    compare.add_argument("--strategy", action="append",
                         help=f"a plan to compare; repeat the flag for each plan. {STRATEGY_HELP} "
                              "(default: full, head_only, lower_half, alternate, top_k:2)")
    compare.add_argument("--seeds", type=int, default=3, help="seeds per plan and rate: 0..N-1 (default: 3)")
    compare.add_argument("--lr-grid", "--lr_grid", dest="lr_grid", default=None,
                         help="'auto' (each plan's default rate x 1/3, 1, 3) or rates like 1e-4,3e-4; chosen per "
                              "plan on the validation split (default: one rate, --lr or the plan's default)")
    compare.add_argument("--data-seed", "--data_seed", dest="data_seed", type=int, default=0,
                         help="seed of the sampling and validation split shared by all runs (default: 0)")
    add_run_flags(compare)
    compare.add_argument("--output", default="runs/compare", help="sweep folder; finished runs in it are reused (default: runs/compare)")
    compare.add_argument("--overwrite", action="store_true", help="retrain runs that already finished")
    compare.add_argument("--runs", default=None, metavar="FOLDER",
                         help="where the runs live (default: OUTPUT/runs); sweeps pointing at one folder share "
                              "every run with the same settings")
    compare.set_defaults(run=cmd_compare)

    from freezetune.io.checkpoint import add_export_parser
    from freezetune.runs.predict import add_predict_parser
    from freezetune.measure.retention import add_retention_parser
    from freezetune.scoring.scorers import add_score_parser

    add_predict_parser(commands)
    add_export_parser(commands)
    add_retention_parser(commands)
    add_score_parser(commands)
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
        subparser.set_defaults(**_config_values(args.config, subparser))
        resume_config = args.config if getattr(args, "resume", None) else None
        args = parser.parse_args(argv)
        args.config = args.config or resume_config
    return args


def _setup_logging(level: str) -> None:
    logging.basicConfig(format="%(message)s", stream=sys.stderr)
    log.setLevel(level.upper())
    try:
        import transformers

        transformers.logging.set_verbosity_error()
    except ImportError:  # pragma: no cover - transformers is a dependency
        pass


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
        _setup_logging(args.log_level)
        return args.run(args)
    except FreezetuneError as error:
        return report(error)
    except KeyboardInterrupt:
        print("freezetune: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
