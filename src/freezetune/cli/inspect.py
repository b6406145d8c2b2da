"""``freezetune inspect``: a model's units (embeddings, blocks 0..L-1, head) and sizes."""

from __future__ import annotations

import freezetune
from freezetune.cli.flags import add_dataclass_flags
from freezetune.core.config import ModelConfig


def add_parser(commands) -> None:
    parser = commands.add_parser("inspect", help="show the model's units (embeddings, blocks 0..L-1, head) and sizes")
    add_dataclass_flags(parser, ModelConfig, "model")
    parser.add_argument("--strategy", default=None, help="also show what this plan spec would train")
    parser.set_defaults(run=run)


def run(args) -> int:
    print(freezetune.runs.inspect_model(args.model, gguf_file=args.gguf_file, pooling=args.pooling,
                                        strategy=args.strategy, trust_remote_code=args.trust_remote_code))
    return 0
