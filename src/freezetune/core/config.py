"""Options as dataclasses: the one source of truth for CLI flags, YAML keys and help text.

Each field's ``help`` metadata is its ``--help`` line; the field name is the YAML key and,
with dashes, the flag (``text_column`` -> ``--text-column``; ``--text_column`` works too).
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from freezetune.core.errors import FreezetuneError

CLASSIFICATION, CAUSAL_LM = "classification", "causal-lm"
# Options that do not change what a run trains: a sweep's run hash leaves them out (adding an
# evaluation set reuses finished runs) and --resume accepts them changed.
NOT_TRAINING = frozenset({"progress", "report_to", "output", "overwrite", "extra_eval", "ood_set", "label_map",
                          "cache_dir", "cache_ram_gb", "trust_remote_code", "min_class_count"})
TASKS = (CLASSIFICATION, CAUSAL_LM)


def option(default: Any = MISSING, help: str = "", choices: tuple | None = None, metavar: str | None = None,
           **kwargs) -> Any:
    metadata = {"help": help, "choices": choices, "metavar": metavar}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata, **kwargs)
    return field(default=default, metadata=metadata, **kwargs)


@dataclass
class TrainConfig:
    """How to train once the plan is fixed."""

    lr: float | None = option(
        None,
        "peak learning rate; default from the plan: 3e-3 head only, 1e-3 module filters "
        "(bias/norm), 3e-4 when at most a third of the blocks train, 1e-4 otherwise",
    )
    epochs: int = option(3, "passes over the training data (ignored when --max-steps is set)")
    max_steps: int | None = option(None, "stop after this many optimizer steps")
    batch_size: int = option(32, "training examples per step (before gradient accumulation)")
    eval_batch_size: int = option(64, "examples per evaluation batch")
    grad_accum: int = option(1, "accumulate gradients over this many batches per optimizer step")
    optimizer: str = option("adamw", "optimizer", choices=("adamw", "sgd"))
    momentum: float = option(0.9, "SGD momentum")
    weight_decay: float = option(0.01, "decoupled weight decay (not applied to biases and norms)")
    warmup_ratio: float = option(0.06, "fraction of steps with linear warm-up, then linear decay to 0")
    max_grad_norm: float | None = option(1.0, "clip the gradient norm to this (none: no clipping)")
    eval_every: int | None = option(None, "evaluate every N optimizer steps (default: every epoch)")
    save_every: int | None = option(
        None, "save resumable state every N optimizer steps (it is always saved at the end of each epoch)"
    )
    patience: int | None = option(None, "early stopping: stop after N evaluations without improvement")
    metric: str = option(
        "auto", "metric that picks the best model; auto: accuracy for classification, validation loss for "
        "causal LMs (exact_match suits short answers)",
        choices=("auto", "accuracy", "macro_f1", "mcc", "loss", "perplexity", "token_accuracy", "exact_match"),
    )
    keep_best: bool = option(True, "restore the best evaluated weights at the end")
    seed: int = option(0, "random seed (head init, dropout, data order, validation split)")
    precision: str = option(
        "auto", "auto: bf16 autocast on a GPU that supports it, else fp32", choices=("auto", "fp32", "bf16")
    )
    bucket: bool = option(False, "length-bucketed batches (less padding; changes the data order)")
    cache: str = option(
        "auto",
        "frozen-prefix cache: compute the frozen embeddings + blocks once and reuse them every epoch; "
        "auto: on when it pays (a frozen prefix, more than one epoch, a fixed plan)",
        choices=("auto", "on", "off"),
    )
    cache_dtype: str = option(
        "fp32", "storage type of cached states (bf16/fp16 halve the memory)", choices=("fp32", "bf16", "fp16")
    )
    cache_ram_gb: float = option(4.0, "cache in RAM up to this size (GiB); the rest goes to a disk memmap")
    cache_dir: str | None = option(
        None, "folder for the part of the cache past --cache-ram-gb (default: the system's temporary folder)"
    )
    gradient_checkpointing: bool = option(
        False, "recompute the trainable blocks' activations in backward (less memory, ~30% more time); "
        "the frozen prefix is never checkpointed, so its backward stays skipped"
    )
    progress: bool = option(True, "show progress bars (the log lines of each phase, epoch and evaluation stay)")
    report_to: str = option(
        "none", "also log training to TensorBoard in RUN/tensorboard/ (needs: pip install tensorboard)",
        choices=("none", "tensorboard"),
    )

    def validate(self) -> TrainConfig:
        positive = ("epochs", "batch_size", "eval_batch_size", "grad_accum")
        for name in positive:
            if getattr(self, name) < 1:
                raise FreezetuneError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        for name in ("max_steps", "eval_every", "save_every", "patience"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise FreezetuneError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
        if self.lr is not None and self.lr <= 0:
            raise FreezetuneError(f"--lr must be positive, got {self.lr}")
        if not 0 <= self.warmup_ratio < 1:
            raise FreezetuneError(f"--warmup-ratio must be in [0, 1), got {self.warmup_ratio}")
        return self


@dataclass
class DataConfig:
    """Where the examples come from."""

    task: str = option(
        CLASSIFICATION, "classification (a label per text) or causal-lm (generate text: --text-column, or "
        "--prompt-column with --response-column)", choices=TASKS,
    )
    data: str | None = option(
        None, "training file (CSV, TSV, JSONL, Parquet; .txt for causal-lm: one example per paragraph); "
        "default: the embedded tweets (classification only)"
    )
    eval_data: str | None = option(
        None, "validation file for model selection; default: a seeded split of --data (stratified by label "
        "for classification)"
    )
    test_data: str | None = option(None, "test file for the reported numbers; without it they are validation numbers")
    extra_eval: list[str] = option(
        [], "another evaluation set, scored separately on the trained model and never used for model selection; "
        "read like --data; repeat for more sets", metavar="NAME=PATH",
    )
    ood_set: list[str] = option(
        [], "an out-of-distribution evaluation set (another domain), scored like --extra-eval and marked (OOD) "
        "in the tables; repeat for more sets", metavar="NAME=PATH",
    )
    text_column: str | None = option(None, "column holding the text (default: text)")
    text_pair_column: str | None = option(None, "second text column for sentence pairs")
    label_column: str | None = option(
        None, "column holding the label (default: label; sentiment for the embedded data)"
    )
    label_map: list[str] = option(
        [], "rename labels of the evaluation files (--eval-data, --test-data, --extra-eval, --ood-set) before "
        "they are checked against the training labels, e.g. pos=positive,neg=negative; repeatable",
        metavar="OLD=NEW,...",
    )
    prompt_column: str | None = option(
        None, "causal-lm: column holding the prompt (masked out of the loss); needs --response-column"
    )
    response_column: str | None = option(None, "causal-lm: column holding the response the model learns to write")
    chat_template: str = option(
        "auto", "causal-lm: render prompt/response pairs with the tokenizer's chat template when it has one "
        "(auto), or join them as written (none)", choices=("auto", "none"),
    )
    pack: bool = option(
        False, "causal-lm: concatenate the examples and cut them into --max-length pieces (no padding)"
    )
    encoding: str = option("auto", "text encoding of the files; auto tries UTF-8, then detects (e.g. latin-1)")
    header: bool = option(True, "the files have a header row (--no-header: columns are named 0, 1, 2, ...)")
    max_length: int = option(
        128, "tokens per example; longer texts are truncated (causal-lm: a prompt loses its start, never the "
        "response), counted in the log and metrics.json"
    )
    max_train_rows: int | None = option(None, "use a stratified sample of this many training rows")
    max_eval_rows: int | None = option(None, "use at most this many validation/test rows")
    validation_fraction: float = option(0.1, "share of --data held out for validation when --eval-data is absent")
    min_class_count: int = option(
        2, "refuse training data in which a label has fewer rows than this (a stray label is often left by broken "
        "quoting); 1 keeps every label"
    )
    retention: str = option(
        "auto",
        "how much pretrained skill survives: sts (STS-B Spearman of mean-pooled embeddings), ppl "
        "(perplexity on reference text), cka (representation similarity to the base), none; auto picks "
        "sts when STS-B is available, else cka; ppl for --task causal-lm (on --retention-data, else WikiText-2 "
        "from ../shared/data, else text shipped with freezetune)",
        choices=("auto", "sts", "ppl", "cka", "none"),
    )
    retention_data: str | None = option(None, "reference data for --retention (scored pairs for sts, text for ppl/cka)")
    retention_limit: int | None = option(
        None, "at most this many reference pairs / texts (tokens for ppl: default 2,048)"
    )


@dataclass
class ModelConfig:
    """Which model, and how it pools."""

    model: str | None = option(
        None, "model folder (or Hub name when online); default: the embedded all-MiniLM-L6-v2, or for "
        "--task causal-lm the embedded SmolLM2-135M-Instruct (GGUF, dequantized)"
    )
    gguf_file: str | None = option(None, "GGUF file inside --model to load (dequantized to float32)")
    pooling: str = option(
        "auto", "sentence pooling; auto reads the model's own (MiniLM: mean)", choices=("auto", "cls", "mean", "last")
    )
    trust_remote_code: bool = option(
        False, "run the Python code a model folder ships for its own classes (config.json's auto_map); only for "
        "models whose author you trust"
    )


def field_help(cls) -> dict[str, dict]:
    """name -> {type, default, help, choices} for every field of a config dataclass."""
    out = {}
    for f in fields(cls):
        default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        out[f.name] = {"type": f.type, "default": default, **f.metadata}
    return out
