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
            "Hugging Face folder (LoRA merged) or as a PEFT LoRA adapter."
        ),
    )
    add_checkpoint_flags(parser)
    parser.add_argument("--to", required=True, metavar="FOLDER",
                        help="new or empty folder to write (an existing non-empty folder is refused)")
    parser.add_argument("--format", default="hf", choices=("hf", "peft"),
                        help="hf: config.json + model.safetensors + tokenizer for "
                             "AutoModelForSequenceClassification; peft: the LoRA adapter only "
                             "(LoRA checkpoints) (default: hf)")
    parser.set_defaults(run=run)
    return parser


def run(args) -> int:
    if args.format == "peft":
        to = freezetune.runs.export_peft(args.checkpoint, args.to, base_path=args.model)
        print(f"wrote PEFT adapter to {to}; load it with PeftModel.from_pretrained(base_model, {str(to)!r})")
        return 0
    to = freezetune.runs.export_hf(args.checkpoint, args.to, base_path=args.model)
    remote = json.loads((to / "freezetune.json").read_text())["trust_remote_code"]
    remote_flag = ", trust_remote_code=True" if remote else ""
    how = f"AutoModelForSequenceClassification.from_pretrained({str(to)!r}{remote_flag})"
    print(f"wrote Hugging Face model to {to}; load it with {how}")
    return 0
