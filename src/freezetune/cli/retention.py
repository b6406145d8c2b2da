"""``freezetune retention``: how much of the pretrained skill a trained checkpoint kept.

Only light imports here: the library is reached at run time through ``freezetune.runs``,
so building the parser (``--help``) loads no torch or transformers.
"""

from __future__ import annotations

import argparse

import freezetune
from freezetune.cli.flags import add_checkpoint_flags


def add_parser(commands) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        "retention",
        help="how much of the pretrained skill a trained checkpoint kept (before / after / change)",
        description="Measure the base model and the tuned checkpoint on a reference skill: STS-B Spearman "
                    "of mean-pooled embeddings (sentence encoders), perplexity on reference text (causal LMs) "
                    "or CKA between base and tuned representations (any model).",
    )
    add_checkpoint_flags(parser)
    parser.add_argument("--reference", default="auto", choices=("auto", "sts", "ppl", "cka"),
                        help="auto: sts when STS-B is available for an encoder, else cka (default: auto)")
    parser.add_argument("--reference-data", "--reference_data", dest="reference_data", default=None,
                        help="scored pairs (sentence1, sentence2, score) for sts; text for ppl / cka "
                             "(default: ../shared/data STS-B dev or WikiText-2 test, else built-in sentences)")
    parser.add_argument("--limit", type=int, default=None,
                        help="at most this many pairs / texts (tokens for ppl; default 2,048 tokens)")
    parser.set_defaults(run=run)
    return parser


def run(args) -> int:
    result = freezetune.runs.checkpoint_retention(
        args.checkpoint, reference=args.reference, reference_data=args.reference_data,
        limit=args.limit, base_path=args.model,
    )
    direction = "higher is better" if result["higher_is_better"] else "lower is better"
    took = freezetune.runs.format_duration(result["seconds"])
    print(f"retention ({result['reference']}, {direction}, n={result['n']}): before {result['before']:.4f}  "
          f"after {result['after']:.4f}  change {result['change']:+.4f}  ({took})")
    return 0
