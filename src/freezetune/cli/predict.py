"""``freezetune predict``: label a file with a trained checkpoint.

Only light imports here: the library is reached at run time through ``freezetune.runs``,
so building the parser (``--help``) loads no torch or transformers.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import freezetune
from freezetune.cli.flags import add_checkpoint_flags


def add_parser(commands) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        "predict",
        help="label a file (classifier) or answer its prompts (causal LM) with a trained checkpoint",
        description=(
            "Read a CSV / TSV / JSONL / Parquet file and write it back as CSV: a classifier adds a `prediction` "
            "column (the label name) and one `prob_<label>` column per label; a causal LM adds a `generation` "
            "column (greedy decoding, prompts encoded as in training)."
        ),
    )
    add_checkpoint_flags(parser)
    parser.add_argument("--data", required=True, metavar="FILE",
                        help="file to label (CSV, TSV, JSONL, Parquet)")
    parser.add_argument("--text-column", default=None, metavar="NAME",
                        help="column holding the text (default: the one used in training, else text)")
    parser.add_argument("--text-pair-column", default=None, metavar="NAME",
                        help="second text column for sentence pairs (default: the one used in training, if any)")
    parser.add_argument("--prompt-column", default=None, metavar="NAME",
                        help="causal LM: column holding the prompts (default: the one used in training)")
    parser.add_argument("--max-new-tokens", type=int, default=32, metavar="N",
                        help="causal LM: generate at most this many tokens per prompt (default: 32)")
    parser.add_argument("--output", default=None, metavar="FILE",
                        help="CSV to write (default: <data name>.predictions.csv in the current folder)")
    parser.add_argument("--encoding", default="auto", metavar="NAME",
                        help="text encoding of --data; auto tries UTF-8, then detects (default: auto)")
    parser.add_argument("--batch-size", type=int, default=64, metavar="N",
                        help="examples per forward pass (default: 64)")
    parser.add_argument("--max-length", type=int, default=None, metavar="N",
                        help="tokens per example; longer texts are truncated, a causal LM's prompts from their start "
                             "(default: as in training)")
    parser.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    parser.set_defaults(run=run)
    return parser


def run(args) -> int:
    output = args.output or f"{Path(args.data).stem}.predictions.csv"
    path = freezetune.runs.predict_file(
        args.checkpoint,
        args.data,
        text_column=args.text_column,
        text_pair_column=args.text_pair_column,
        output_path=output,
        encoding=args.encoding,
        batch_size=args.batch_size,
        max_length=args.max_length,
        overwrite=args.overwrite,
        base_path=args.model,
        prompt_column=args.prompt_column,
        max_new_tokens=args.max_new_tokens,
    )
    print(f"wrote predictions to {path}")
    return 0
