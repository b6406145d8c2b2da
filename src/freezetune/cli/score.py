"""``freezetune score``: per-block scores on a small labelled sample, one chart comparing them, and their cost."""

from __future__ import annotations

import json
from pathlib import Path

import freezetune
from freezetune.cli.flags import add_dataclass_flags, pick
from freezetune.core.config import DataConfig, ModelConfig

# The scoring layer's names, spelled out so that --help needs no torch (a test holds them equal).
SCORER_NAMES = ("semantic", "variability", "gradient", "snr", "fisher")
DEFAULT_SAMPLES = 256


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "score", help="score every block (how much it is worth training) on a small labelled sample",
        description="Per-block scores, higher = more worth training; blocks are numbered from 0 at the input.",
    )
    parser.add_argument("--scorer", action="append", choices=[*SCORER_NAMES, "all"],
                        help="scorer to run; repeat for several, or 'all' (default: semantic)")
    parser.add_argument("--samples", type=int, default=DEFAULT_SAMPLES,
                        help=f"training rows to score on (default: {DEFAULT_SAMPLES})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample (default: 0)")
    parser.add_argument("--plot", default=None, metavar="PNG",
                        help="write one PNG comparing the scorers side by side (a bar chart per scorer, blocks on x)")
    parser.add_argument("--json", default=None, metavar="FILE", help="write every result as JSON")
    parser.add_argument("--epochs", type=int, default=3,
                        help="epochs of the full fine-tuning run the scoring time is compared with (default: 3)")
    add_dataclass_flags(parser, DataConfig, "data")
    add_dataclass_flags(parser, ModelConfig, "model")
    parser.set_defaults(run=run)


def run(args) -> int:
    runs = freezetune.runs
    spec = runs.RunSpec(data=pick(args, DataConfig), model=pick(args, ModelConfig))
    results, estimate = runs.score_training_data(spec, args.scorer or [], samples=args.samples, seed=args.seed,
                                                 epochs=args.epochs)
    duration = runs.format_duration
    for result in results:
        print(result.table())
        share = result.details["share_of_full_run"]
        print(f"cost: {duration(result.seconds)} = {share:.1%} of one full fine-tuning run\n")
    if args.plot:
        print(f"plot: {runs.plot_scores(results, args.plot)}")
    print(
        f"one full fine-tuning run here ~ {duration(estimate['run_s'])}: {estimate['epochs']} epochs x "
        f"{estimate['steps'] // estimate['epochs']} steps of {estimate['batch_size']} rows x "
        f"{duration(estimate['step_s'])} "
        "(forward + backward timed on the sample; optimizer step not included)"
    )
    if args.json:
        payload = {"scores": [r.to_dict() for r in results], "full_run_estimate": estimate}
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
    return 0
