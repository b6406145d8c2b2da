"""``freezetune serve``: many compact checkpoints behind one HTTP API, each base model loaded once.

Only light imports here: the server (torch, FastAPI, uvicorn) is reached at run time through
``freezetune.serve``, so ``freezetune serve --help`` is instant.
"""

from __future__ import annotations

import argparse

import freezetune
from freezetune.cli.flags import add_config_flag
from freezetune.core.errors import FreezetuneError


def add_parser(commands) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        "serve",
        help="serve trained checkpoints over HTTP (vLLM-style /v1/classify, OpenAI-style completions)",
        description=(
            "Load every --checkpoint onto its base model (each base once; a checkpoint adds only its trained "
            "tensors) and serve them: GET /health, GET /v1/models, POST /v1/classify (also /classify; `model` may "
            "list several tasks of one base, which then share the frozen trunk), POST /v1/completions and "
            "/v1/chat/completions for causal-LM checkpoints. OpenAPI schema at /docs and /openapi.json. "
            "Requests for one base are batched; a full queue answers 503. SIGTERM finishes the requests in flight, "
            "then exits."
        ),
    )
    add_config_flag(parser)
    parser.add_argument("--checkpoint", action="append", default=[], metavar="NAME=RUN_OR_CKPT",
                        help="a task to serve: its name in requests, '=', a checkpoint folder or a run folder "
                             "holding checkpoint/ (repeat the flag; in YAML a list or a mapping name: folder)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default: 8000)")
    limits = parser.add_argument_group("batching and limits")
    limits.add_argument("--max-batch", "--max_batch", dest="max_batch", type=int, default=64, metavar="N",
                        help="rows per trunk forward: requests waiting together are batched up to this (default: 64)")
    limits.add_argument("--max-wait-ms", "--max_wait_ms", dest="max_wait_ms", type=float, default=5.0, metavar="MS",
                        help="how long a batch's first request waits for others (default: 5)")
    limits.add_argument("--max-queue", "--max_queue", dest="max_queue", type=int, default=256, metavar="N",
                        help="requests waiting per base; beyond it 503 with Retry-After (default: 256)")
    limits.add_argument("--max-inputs", "--max_inputs", dest="max_inputs", type=int, default=64, metavar="N",
                        help="texts or prompts per request (default: 64)")
    limits.add_argument("--max-tokens", "--max_tokens", dest="max_tokens", type=int, default=512, metavar="N",
                        help="tokens a completion may ask for at most (default: 512)")
    limits.add_argument("--default-max-tokens", "--default_max_tokens", dest="default_max_tokens", type=int,
                        default=32, metavar="N", help="tokens generated when a request names none (default: 32)")
    limits.add_argument("--max-body-bytes", "--max_body_bytes", dest="max_body_bytes", type=int, default=4 * 2**20,
                        metavar="N", help="largest request body; larger ones get 413 (default: 4 MiB)")
    parser.set_defaults(run=run)
    return parser


def run(args) -> int:
    if not args.checkpoint:
        raise FreezetuneError("serve needs at least one --checkpoint NAME=RUN_OR_CHECKPOINT")
    limits = freezetune.serve.Limits(max_inputs=args.max_inputs, max_tokens=args.max_tokens,
                                     default_max_tokens=args.default_max_tokens)
    options = freezetune.serve.ServeOptions(
        host=args.host, port=args.port, limits=limits, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
        max_queue=args.max_queue, max_body_bytes=args.max_body_bytes,
    )
    return freezetune.serve.serve(args.checkpoint, options, log_level=args.log_level)
