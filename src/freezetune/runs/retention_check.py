"""Retention of a saved checkpoint: the trained model against the base it was trained from."""

from __future__ import annotations

import os

from freezetune.core.model import POOLINGS
from freezetune.io.checkpoint import load_base, load_checkpoint
from freezetune.measure.retention import measure, resolve_reference


def checkpoint_retention(
    checkpoint: str | os.PathLike[str],
    *,
    reference: str = "auto",
    reference_data: str | None = None,
    limit: int | None = None,
    base_path: str | None = None,
) -> dict:
    """Measure the base model and the tuned checkpoint on one reference skill; ``measure``'s dict.

    ``checkpoint`` is a checkpoint folder or a run folder holding one; ``base_path`` replaces
    the base model path recorded at training time (its weights must match the fingerprint).
    STS embeds with mean pooling (how sentence encoders are scored); the other measures use
    the classifier's own pooling.
    """
    tuned, tokenizer, meta = load_checkpoint(checkpoint, base_path=base_path)
    base = load_base(meta, base_path)
    kind = resolve_reference(tuned.backbone, reference, reference_data)
    pooling = tuned.pooling if tuned.pooling in POOLINGS else "last"  # a causal LM pools nothing: its last token
    return measure(base.backbone, tuned.backbone, tokenizer, reference=kind, reference_data=reference_data,
                   limit=limit, pooling="mean" if kind == "sts" else pooling)
