"""Whether the frozen-prefix cache pays for a fit, and building (or reusing) it when it does."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from freezetune.io.loader import make_loader
from freezetune.measure.units import format_bytes, format_duration
from freezetune.strategies.schedules import StaticSchedule
from freezetune.training.prefix_cache import (
    CacheKey,
    CacheStore,
    PrefixCache,
    build_cache,
    data_fingerprint,
    prefix_fingerprint,
)

if TYPE_CHECKING:  # typing only: the Finetuner imports this module
    from freezetune.training.finetuner import Finetuner

log = logging.getLogger("freezetune")


def cache_off_reason(tuner: Finetuner, train, epochs: int) -> str | None:
    mode = tuner.config.cache
    if mode == "off":
        return "--cache off"
    if not hasattr(train, "column_names"):
        return "training data came as ready batches, not a dataset"
    if tuner.frozen_prefix_depth() == 0:
        return "nothing is frozen below the first trainable unit"
    if not isinstance(tuner.schedule, StaticSchedule) and mode == "auto":
        return "the plan changes during training"
    if epochs < 2 and mode == "auto":
        return "a single pass over the data would not reuse it"
    return None


def cache_shard(tuner: Finetuner, *, train: bool) -> str:
    """Which examples a cache of the data holds: "" (all), or this rank's "rank/world".

    Under data parallelism a rank trains on its own examples only (distributed.py), so the training
    data's cache holds those. Evaluation runs whole on every rank, so its cache does too.
    """
    return f"{tuner.ranks.rank}/{tuner.ranks.world}" if train and tuner.ranks.world > 1 else ""


def cache_source(tuner: Finetuner, data, shard: str):
    """The loader a cache of ``data`` is built from and every example's length (0 outside the shard).

    Built only when a cache is missing: it reads every example's length.
    """
    indexed = data.add_column("index", list(range(len(data))))
    lengths = [len(ids) for ids in data["input_ids"]]
    if shard:
        owned = tuner.ranks.owned(len(data))
        indexed = indexed.select(owned)
        kept = set(owned)
        lengths = [n if i in kept else 0 for i, n in enumerate(lengths)]
    loader = make_loader(indexed, batch_size=tuner.config.eval_batch_size, shuffle=False, seed=0,
                         pad_token_id=tuner.pad_token_id)
    return loader, lengths


def prepare_caches(tuner: Finetuner, store: CacheStore, train, eval, epochs: int) -> tuple[dict[int, PrefixCache], str]:
    """Caches by ``id`` of the datasets they hold (train, eval), and a one-line status for logs and metrics."""
    reason = cache_off_reason(tuner, train, epochs)
    if reason is not None:
        log.info("frozen-prefix cache off: %s", reason)
        return {}, f"off: {reason}"
    cfg = tuner.config
    depth = tuner.frozen_prefix_depth()
    datasets = [d for d in (train, eval) if d is not None and hasattr(d, "column_names")]
    prefix = prefix_fingerprint(tuner.layers, depth)
    limit = int(cfg.cache_ram_gb * 2**30)
    caches: dict[int, PrefixCache] = {}
    reused = 0
    started = time.perf_counter()
    for data in datasets:
        shard = cache_shard(tuner, train=data is train)
        key = CacheKey(prefix, depth, data_fingerprint(data), tuner.tokenizer_name, cfg.cache_dtype, shard)
        cache = store.get(key)
        if cache is None:
            log.info("building the frozen-prefix cache: blocks 0..%d on %d rows ...", depth - 1, len(data))
            loader, lengths = cache_source(tuner, data, shard)
            in_ram = sum(c.ram_bytes for c in caches.values())  # the training data's cache comes first
            cache = build_cache(tuner.layers, depth, loader, lengths, key, device=tuner.device, dtype=cfg.cache_dtype,
                                ram_limit_bytes=max(0, limit - in_ram), autocast_dtype=tuner.autocast_dtype,
                                directory=cfg.cache_dir)
            store.put(cache, limit_bytes=limit)
        else:
            reused += 1
        caches[id(data)] = cache
    size = sum(c.bytes for c in caches.values())
    ram = sum(c.ram_bytes for c in caches.values())
    where = "RAM" if ram == size else f"RAM + {format_bytes(size - ram)} on disk"
    status = f"on: boundary {depth}, {format_bytes(ram)} in {where} ({cfg.cache_dtype})"
    if reused:
        status += f", {reused} of {len(datasets)} reused from an earlier run"
    log.info("frozen-prefix cache %s (%s)", status, format_duration(time.perf_counter() - started))
    return caches, status
