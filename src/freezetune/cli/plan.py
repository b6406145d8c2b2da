"""``freezetune plan``: resolve a plan spec for a model and write it for axolotl, LLaMA-Factory, PEFT or as JSON."""

from __future__ import annotations

import shlex
import sys

import freezetune
from freezetune.cli.flags import STRATEGY_HELP, add_config_flag, add_dataclass_flags, pick
from freezetune.cli.score import DEFAULT_SAMPLES
from freezetune.core.config import DataConfig, ModelConfig

# The integrations layer's format names, spelled out so that --help needs no torch (a test holds them equal).
FORMAT_NAMES = ("json", "axolotl", "llama-factory", "peft")


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "plan", help="resolve a plan and write it for axolotl, LLaMA-Factory, PEFT or as JSON",
        description="Resolve a plan spec for a model (auto scores a sample of --data first) and write it for "
                    "another trainer, in the parameter names of the Hugging Face class that trainer loads. "
                    "axolotl: unfrozen_parameters (or its LoRA keys); llama-factory: finetuning_type freeze (or "
                    "lora) keys; peft: a LoraConfig folder (adapter_config.json); json: plan.json with the names "
                    "that train. A plan the tool cannot express is refused, naming the nearest one it can.",
    )
    add_config_flag(parser)
    parser.add_argument("--strategy", required=True, help=STRATEGY_HELP)
    parser.add_argument("--format", required=True, choices=FORMAT_NAMES,
                        help="json: plan.json + README.md; axolotl: axolotl.yaml; llama-factory: llama_factory.yaml; "
                             "peft: adapter_config.json + README.md (LoRA plans)")
    parser.add_argument("--output", default="freezetune-plan",
                        help="folder to write into (default: freezetune-plan); files already there are never "
                             "overwritten")
    parser.add_argument("--samples", type=int, default=DEFAULT_SAMPLES,
                        help=f"training rows a measuring spec (auto...) scores (default: {DEFAULT_SAMPLES})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the scored sample (default: 0)")
    add_dataclass_flags(parser, DataConfig, "data")
    add_dataclass_flags(parser, ModelConfig, "model")
    parser.set_defaults(run=run)


def run(args) -> int:
    runs = freezetune.runs
    spec = runs.RunSpec(data=pick(args, DataConfig), model=pick(args, ModelConfig))
    typed = sys.argv[1:] if "plan" in sys.argv[1:] else ["plan", "--strategy", args.strategy, "--format", args.format]
    command = shlex.join(["freezetune", *typed])
    target, paths = runs.export_plan(spec, args.strategy, args.format, args.output, samples=args.samples,
                                     seed=args.seed, command=command)
    trained, total = target.counts()
    print(f"plan: {target.plan.spec}: {runs.blocks_line(target.plan, target.layers)}; {trained:,} of {total:,} "
          f"parameters train in full ({trained / total:.2%})")
    for path in paths:
        print(f"wrote {path}")
    return 0
