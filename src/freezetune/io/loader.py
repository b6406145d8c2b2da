"""Padded batches: tokenized examples in, dict batches of LongTensors out.

`make_loader` pads per batch (`collate`), optionally bucketing examples of similar length
(`BucketBatchSampler`) so that little compute goes to padding. Under data parallelism each
process keeps its own examples of every global batch (`ShardedBatchSampler`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from functools import partial
from typing import Any

import datasets
import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, Sampler, SequentialSampler

from freezetune.core.errors import FreezetuneError

IGNORE = -100  # the label losses skip: padding, and a causal LM's prompt tokens


def _as_list(values: Any) -> list:
    return values.tolist() if hasattr(values, "tolist") else list(values)


def collate(features: Sequence[Mapping[str, Any]], pad_token_id: int = 0) -> dict[str, torch.Tensor]:
    """Pad a list of tokenized examples to the longest one; return LongTensors.

    input_ids are padded with `pad_token_id`, attention_mask and token_type_ids with 0
    (an attention_mask is made when absent). Integer labels become a 1-D tensor;
    per-token labels (lists) are padded with -100, the index losses ignore.
    """
    ids = [_as_list(f["input_ids"]) for f in features]
    longest = max(len(x) for x in ids)

    def pad(rows: list[list[int]], value: int, width: int = longest) -> torch.Tensor:
        return torch.tensor([row + [value] * (width - len(row)) for row in rows], dtype=torch.long)

    batch = {"input_ids": pad(ids, pad_token_id)}
    masks = [_as_list(f["attention_mask"]) for f in features] if "attention_mask" in features[0] else None
    batch["attention_mask"] = pad(masks or [[1] * len(x) for x in ids], 0)
    if "token_type_ids" in features[0]:
        batch["token_type_ids"] = pad([_as_list(f["token_type_ids"]) for f in features], 0)
    if "index" in features[0]:  # example positions, for the frozen-prefix cache
        batch["index"] = torch.tensor([int(f["index"]) for f in features], dtype=torch.long)
    if "labels" in features[0]:
        labels = [f["labels"] for f in features]
        if isinstance(labels[0], (list, tuple)) or getattr(labels[0], "ndim", 0) > 0:
            rows = [_as_list(x) for x in labels]
            batch["labels"] = pad(rows, IGNORE, max(len(r) for r in rows))
        else:
            batch["labels"] = torch.tensor([int(x) for x in labels], dtype=torch.long)
    return batch


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of similar-length examples, in a seeded random order.

    Each pass shuffles the examples, sorts each chunk of `chunk_batches` batches by
    length, cuts it into batches and shuffles the batches. Sorting only within chunks
    keeps batches varied from epoch to epoch while most of the padding goes away.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, *, shuffle: bool, seed: int = 0,
                 chunk_batches: int = 50) -> None:
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.chunk = batch_size * chunk_batches
        self.generator = torch.Generator().manual_seed(seed)  # one stream: new order each epoch

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        n = len(self.lengths)
        order = torch.randperm(n, generator=self.generator).numpy() if self.shuffle else np.arange(n)
        batches = []
        for start in range(0, n, self.chunk):
            chunk = order[start:start + self.chunk]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            batches += [chunk[i:i + self.batch_size].tolist() for i in range(0, len(chunk), self.batch_size)]
        if self.shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=self.generator).tolist()]
        return iter(batches)


class Shard(list):
    """One rank's positions in a global batch, and its ``weight``: rows here x ranks / rows in the batch."""

    weight: float


class ShardedBatchSampler(Sampler[Shard]):
    """Rank ``rank``'s part of every batch of ``batches``: the positions ``i`` with ``i % world == rank``.

    Ownership never changes, so a rank always sees the same examples (and caches only those).
    A batch with none of them gives the rank its first own example at weight 0: every rank
    takes part in every step, and the gradient is unchanged.
    """

    def __init__(self, batches: Sampler[list[int]], rank: int, world: int) -> None:
        self.batches, self.rank, self.world = batches, rank, world
        self.generator = getattr(batches, "generator", None)  # a bucketed order's: resume saves and restores it

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[Shard]:
        for batch in self.batches:
            own = [i for i in batch if i % self.world == self.rank]
            shard = Shard(own or [self.rank])
            shard.weight = len(own) * self.world / len(batch)
            yield shard


class _Collated:
    """A dataset read a shard at a time: the padded batch, with the shard's weight as ``shard_weight``."""

    def __init__(self, dataset: Any, collate_fn) -> None:
        self.dataset, self.collate_fn = dataset, collate_fn

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitems__(self, shard: Shard) -> dict[str, torch.Tensor]:
        read = getattr(self.dataset, "__getitems__", None)  # a datasets.Dataset reads many rows at once
        batch = self.collate_fn(read(list(shard)) if read else [self.dataset[i] for i in shard])
        batch["shard_weight"] = torch.tensor(shard.weight)
        return batch


def _as_is(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return batch


def _lengths(dataset: Any) -> list[int]:
    if isinstance(dataset, datasets.Dataset):
        return [len(ids) for ids in dataset["input_ids"]]  # one column read, not row by row
    return [len(dataset[i]["input_ids"]) for i in range(len(dataset))]


def make_loader(
    dataset: Any,
    *,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    pad_token_id: int = 0,
    bucket: bool = False,
    shard: tuple[int, int] | None = None,
) -> DataLoader:
    """A DataLoader of dynamically padded dict batches (see `collate`).

    The order is reproducible: shuffling draws from a torch.Generator seeded with `seed`.
    `bucket=True` groups examples of similar length (`BucketBatchSampler`). `shard=(rank, world)`
    draws batches of `batch_size` in the same order and yields only that rank's part of each
    (`ShardedBatchSampler`), with its weight as `shard_weight`.
    """
    if batch_size < 1:
        raise FreezetuneError(f"batch size must be at least 1, got {batch_size}")
    collate_fn = partial(collate, pad_token_id=pad_token_id)
    generator = torch.Generator().manual_seed(seed)
    if bucket:
        batches = BucketBatchSampler(_lengths(dataset), batch_size, shuffle=shuffle, seed=seed)
    elif shard is not None:  # what DataLoader(shuffle=..., generator=...) builds, so the order is the same
        order = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
        batches = BatchSampler(order, batch_size, drop_last=False)
    else:
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator, collate_fn=collate_fn)
    if shard is not None:
        # A plain order's generator goes to the DataLoader as well: it draws from it first, as unsharded.
        return DataLoader(_Collated(dataset, collate_fn), batch_sampler=ShardedBatchSampler(batches, *shard),
                          collate_fn=_as_is, generator=None if bucket else generator)
    return DataLoader(dataset, batch_sampler=batches, collate_fn=collate_fn)
