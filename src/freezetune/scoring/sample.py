"""The labelled sample scorers read: a seeded subset of the training data, as padded batches.

Labels are a class id per row (classification) or a token id per position, -100 where nothing is
predicted (causal LM: ``collate`` pads such lists with -100, so they survive sampling).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch

from freezetune.core.errors import FreezetuneError
from freezetune.io.loader import make_loader

DEFAULT_SAMPLES = 256


def take(batches: Iterable[dict], max_samples: int | None) -> Iterator[dict]:
    """Labelled batches up to ``max_samples`` rows (the last one cut); clear errors otherwise."""
    if max_samples is not None and max_samples < 1:
        raise FreezetuneError(f"the scoring sample needs at least 1 example, got max_samples={max_samples}")
    seen = 0
    for batch in batches:
        if "labels" not in batch or batch["labels"] is None:
            raise FreezetuneError("scoring needs labelled examples: a batch of the sample has no 'labels'")
        labels = torch.as_tensor(batch["labels"])
        if labels.ndim not in (1, 2):  # a class id per row, or a token id (-100: none) per position
            raise FreezetuneError("scoring needs one class id per example or one label per token; "
                                  f"a batch has labels of shape {tuple(labels.shape)}")
        if max_samples is not None and seen + len(labels) > max_samples:
            keep = max_samples - seen
            batch = {k: v[:keep] for k, v in batch.items() if v is not None}
        if len(batch["labels"]) == 0:
            break
        seen += len(batch["labels"])
        yield batch
        if max_samples is not None and seen >= max_samples:
            break
    if seen == 0:
        raise FreezetuneError("the scoring sample is empty: give at least one labelled example")


def sample_batches(dataset, *, size: int = DEFAULT_SAMPLES, batch_size: int = 32, seed: int = 0,
                   pad_token_id: int = 0) -> list[dict]:
    """A seeded random sample of min(size, rows) examples of a tokenized dataset, as padded batches."""

    rows = len(dataset)
    if rows == 0:
        raise FreezetuneError("the scoring sample is empty: the data set has no rows")
    if "labels" not in getattr(dataset, "column_names", ["labels"]):
        raise FreezetuneError("scoring needs labelled examples: the data set has no 'labels' column")
    picked = np.sort(np.random.default_rng(seed).permutation(rows)[: min(size, rows)])
    subset = dataset.select(picked.tolist()) if hasattr(dataset, "select") else [dataset[int(i)] for i in picked]
    loader = make_loader(subset, batch_size=batch_size, shuffle=False, pad_token_id=pad_token_id)
    return [{k: v for k, v in batch.items() if k != "index"} for batch in loader]
