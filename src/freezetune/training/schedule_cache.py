"""Frozen-prefix caches for plans that change while training (schedules).

A schedule moves the boundary between the frozen prefix and what trains. Two cases:

- **Pristine boundaries.** Boundary d is pristine when no block below d (nor the embeddings) has
  trained by the time the schedule first reaches it: top-down LIFT and gradual unfreezing only
  ever visit such boundaries. They are read off the schedule's plans before training and stored
  in *one* pass over the untouched prefix (one forward per batch, a capture at each boundary),
  spilling to disk past ``--cache-ram-gb``.
- **A boundary that moved up through trained blocks** (bottom-up LIFT, AutoFreeze). When the plan
  changes to such a boundary, its cache is *advanced* from the deepest valid cache below it,
  through the blocks in between alone, with their current (trained, now frozen) weights.

Every cache's key holds a fingerprint of the prefix weights that produced it, and a cache is used
only while that fingerprint matches the current weights, so it is never stale. A boundary is
cached only when that pays: the pass over the data must cost no more block forwards than the
steps it serves skip. Schedules whose plans are not ``step_determined`` (AutoFreeze, a user's
own) are not read ahead: for them the rest of the run counts.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from freezetune.training.cache_setup import cache_shard, cache_source
from freezetune.training.prefix_cache import (
    CacheKey,
    PrefixCache,
    build_caches,
    data_fingerprint,
    prefix_fingerprint,
)

if TYPE_CHECKING:  # typing only: the Finetuner imports this module
    from freezetune.training.finetuner import Finetuner

log = logging.getLogger("freezetune")


@dataclass
class ScheduleCaches:
    """Every boundary cache of one fit, by dataset and boundary, and what building them cost."""

    datasets: dict[int, Any]  # id(dataset) -> dataset (training and evaluation data)
    train_id: int
    eval_id: int | None
    depth_at: list[int] | None  # the frozen-prefix depth at every step, when the schedule can be read ahead
    steps_per_epoch: int
    total_steps: int
    by_depth: dict[int, dict[int, PrefixCache]] = field(default_factory=dict)
    build_s: float = 0.0
    events: list[str] = field(default_factory=list)  # what was built, for the log and tests

    def holds_for(self, step: int, depth: int) -> int:
        """Steps from ``step`` during which the boundary stays at ``depth``."""
        if self.depth_at is None:
            return self.total_steps - step
        end = step
        while end < len(self.depth_at) and self.depth_at[end] == depth:
            end += 1
        return end - step


def read_ahead(tuner: Finetuner, total_steps: int, steps_per_epoch: int) -> list | None:
    """The plan at every step, when the schedule says it depends on the step alone (else None)."""
    if not getattr(tuner.schedule, "step_determined", False):
        return None
    return [tuner.schedule.plan_at(step, step // steps_per_epoch, {}) for step in range(total_steps)]


def pristine_steps(plans: list, num_blocks: int) -> dict[int, list[int]]:
    """For each boundary d >= 1, the steps at d while nothing below d (nor the embeddings) has trained yet."""
    trained_below = num_blocks + 1  # the lowest block trained so far (embeddings count as -1)
    out: dict[int, list[int]] = {}
    for step, plan in enumerate(plans):
        depth = plan.frozen_prefix_depth(num_blocks)
        if 1 <= depth <= trained_below and not plan.embeddings:
            out.setdefault(depth, []).append(step)
        lowest = -1 if plan.embeddings else min(plan.trainable_blocks(num_blocks), default=num_blocks)
        trained_below = min(trained_below, lowest)
    return out


def pristine_depths(plans: list, num_blocks: int) -> list[int]:
    """Boundaries d >= 1 visited while nothing below d has trained yet."""
    return sorted(pristine_steps(plans, num_blocks))


def setup(tuner: Finetuner, train, eval, total_steps: int, steps_per_epoch: int) -> ScheduleCaches | None:
    """Store the schedule's pristine boundaries in one pass; None when the cache is off or cannot pay."""
    datasets = {id(d): d for d in (train, eval) if d is not None and hasattr(d, "column_names")}
    if tuner.config.cache == "off" or id(train) not in datasets:
        return None
    plans = read_ahead(tuner, total_steps, steps_per_epoch)
    n = tuner.layers.num_blocks
    depth_at = [p.frozen_prefix_depth(n) for p in plans] if plans is not None else None
    caches = ScheduleCaches(datasets, id(train), id(eval) if id(eval) in datasets else None, depth_at,
                            steps_per_epoch, total_steps)
    if plans is not None:
        steps = pristine_steps(plans, n)
        # In blocks' forwards per example: the pass costs the deepest prefix once per training row;
        # every step it serves skips its boundary's prefix for a batch.
        saved = sum(len(at) * tuner.config.batch_size * d for d, at in steps.items())
        if steps and saved > len(train) * max(steps):
            _build(tuner, caches, sorted(steps), source=None)
    return caches


def follow(tuner: Finetuner, caches: ScheduleCaches, step: int) -> None:
    """Point the fit's caches at the current boundary: a stored one, an advanced one, or none."""
    depth = tuner.frozen_prefix_depth()
    fresh = {d: prefix_fingerprint(tuner.layers, d) for d in _stored_depths(caches) if d <= depth}
    chosen: dict[int, PrefixCache | None] = {}
    for key in caches.datasets:
        per_depth = caches.by_depth.get(key, {})
        valid = [d for d, c in per_depth.items() if d <= depth and c.key.prefix == fresh.get(d)]
        chosen[key] = per_depth[max(valid)] if valid else None
    if depth >= 1 and any(c is None or c.depth < depth for c in chosen.values()):
        below = [c.depth for c in chosen.values() if c is not None]
        source = min(below) if len(below) == len(chosen) else None
        # Advancing runs blocks source..depth-1 once per training row; each step it serves skips the
        # blocks below depth for a batch (those below source are skipped either way).
        cost = len(caches.datasets[caches.train_id]) * (depth - (source or 0))
        saved = caches.holds_for(step, depth) * tuner.config.batch_size * (depth - (source or 0))
        if saved >= cost:  # a tie still pays: the cache serves the evaluations too
            _build(tuner, caches, [depth], source=source)
            return follow(tuner, caches, step)
    tuner.caches = {key: c for key, c in chosen.items() if c is not None}
    tuner.train_cache = chosen.get(caches.train_id)
    tuner.eval_cache = chosen.get(caches.eval_id) if caches.eval_id is not None else None


def _stored_depths(caches: ScheduleCaches) -> set[int]:
    return {d for per_depth in caches.by_depth.values() for d in per_depth}


def _build(tuner: Finetuner, caches: ScheduleCaches, depths: list[int], source: int | None) -> None:
    """Build ``depths`` for every dataset in one pass each, from the boundary ``source`` when given."""
    started = time.perf_counter()
    cfg = tuner.config
    limit = int(cfg.cache_ram_gb * 2**30)
    for key, data in caches.datasets.items():
        shard = cache_shard(tuner, train=key == caches.train_id)
        loader, lengths = cache_source(tuner, data, shard)
        keys = {d: CacheKey(prefix_fingerprint(tuner.layers, d), d, data_fingerprint(data), tuner.tokenizer_name,
                            cfg.cache_dtype, shard) for d in depths}
        per_depth = caches.by_depth.setdefault(key, {})
        used = sum(c.ram_bytes for per in caches.by_depth.values() for c in per.values())
        built = build_caches(tuner.layers, keys, loader, lengths, device=tuner.device, dtype=cfg.cache_dtype,
                             ram_limit_bytes=max(0, limit - used), autocast_dtype=tuner.autocast_dtype,
                             source=per_depth[source] if source is not None else None, directory=cfg.cache_dir)
        per_depth.update(built)
    caches.build_s += time.perf_counter() - started
    what = f"advanced from boundary {source} to {depths[0]}" if source else f"boundaries {depths} in one pass"
    caches.events.append(what)
    log.info("frozen-prefix cache: %s (%.1f s)", what, time.perf_counter() - started)
