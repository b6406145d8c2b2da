"""``freezetune export``: a checkpoint as a Hugging Face model folder or a PEFT adapter.

Only light imports here: the library is reached at run time through ``freezetune.runs``,
so building the parser (``--help``) loads no torch or transformers.
"""

from __future__ import annotations

import argparse
import json

import freezetune
from freezetune.cli.flags import add_checkpoint_flags


def add_parser(commands) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        "export",
        help="export a checkpoint as a Hugging Face model folder or a PEFT adapter",
        description=(
            "Rebuild the model from its base and the compact checkpoint, then write it as a plain "
            "Hugging Face folder (LoRA merged) or as a PEFT LoRA adapter. Both load with the standard "
            "transformers / PEFT calls (printed when done, and in the folder's README.md model card) and "
            "predict or generate what the checkpoint does."
        ),
    )
    add_checkpoint_flags(parser)
    parser.add_argument("--to", required=True, metavar="FOLDER",
                        help="new or empty folder to write (an existing non-empty folder is refused)")
    parser.add_argument("--format", default="hf", choices=("hf", "peft"),
                        help="hf: config.json + model.safetensors + tokenizer for AutoModelForSequenceClassification "
                             "or AutoModelForCausalLM; peft (LoRA checkpoints): an adapter for PeftModel / "
                             "AutoPeftModelFor..., with the head and other trained modules in modules_to_save, plus "
                             "base/ when no stock class pools like the model (default: hf)")
    parser.set_defaults(run=run)
    return parser


def run(args) -> int:
    export = freezetune.runs.export_peft if args.format == "peft" else freezetune.runs.export_hf
    to = export(args.checkpoint, args.to, base_path=args.model)
    how = json.loads((to / "freezetune.json").read_text())["load"]  # the exact call, also in README.md
    what = "PEFT adapter" if args.format == "peft" else "Hugging Face model"
    print(f"wrote {what} to {to}; load it with {how}")
    return 0
