"""Schedules by name: plans that change while training, each a pure function of the step and epoch.

Being pure (seeded draws are seeded by the stage number), they need no saved state to resume:
the step alone says where a schedule is. Blocks are numbered from 0 at the input; the head
always trains (a fresh head must learn), the embeddings only where the paper trains them.

* ``lift`` — LIFT (Zhu et al., "LIFT: Efficient Layer-wise Fine-tuning for Large Model Models",
  OpenReview u0INlprg3U): one block trains per phase; phases walk top-down by default.
* ``gradual_unfreeze`` — ULMFiT (Howard & Ruder 2018, arXiv 1801.06146): the head alone first,
  then one more block from the top each stage, with discriminative rates.
* ``lisa`` — LISA (arXiv 2403.17919): embeddings and head always train; ``gamma`` blocks drawn
  at random, re-drawn every ``interval`` steps.
* ``hft`` — Half Fine-Tuning (arXiv 2404.18466): in every block half of the attention and half of
  the feed-forward weight groups train, re-drawn each stage.

``autofreeze`` measures gradients while it trains, so it lives with the measuring strategies in
``scoring/``.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

from freezetune.core.errors import FreezetuneError
from freezetune.core.layout import LayerMap, block_unit
from freezetune.core.plan import Plan
from freezetune.core.spec import BlockList
from freezetune.strategies.lr_policy import discriminative
from freezetune.strategies.registry import register

ORDERS = ("top_down", "bottom_up", "random")
# How long a stage (phase) lasts, for every schedule that has stages.
STAGE_HELP = {
    "steps": "optimizer steps per stage (0: stages last `epochs` epochs)",
    "epochs": "epochs per stage when steps=0",
}


def stage_of(step: int, epoch: int, steps: int, epochs: int) -> int:
    """The stage a step belongs to: stages last ``steps`` optimizer steps, or else ``epochs`` epochs."""
    return step // steps if steps else epoch // max(1, epochs)


def _check_length(name: str, steps: int, epochs: int) -> None:
    if steps < 0 or epochs < 1:
        raise FreezetuneError(f"{name} needs steps >= 0 and epochs >= 1 (steps=0: stages last `epochs` epochs)")


def _seeded(seed: int, stage: int) -> random.Random:
    return random.Random(f"{seed}:{stage}")  # a string seed is hashed the same in every process


@dataclass(frozen=True)
class Lift:
    step_determined = True  # plans depend on step and epoch only: the prefix cache reads them ahead
    walk: tuple[int, ...]  # the blocks, in the order their phases come
    steps: int
    epochs: int
    order: str
    seed: int
    spec: str = "lift"

    @property
    def rate_plan(self) -> Plan:
        return Plan(blocks=self.walk[:1])

    def plan_at(self, step: int, epoch: int, observations: dict[str, Any]) -> Plan:
        stage = stage_of(step, epoch, self.steps, self.epochs)
        walk = self.walk
        if self.order == "random":  # a new seeded order every pass over the walk
            walk = tuple(_seeded(self.seed, stage // len(walk)).sample(walk, len(walk)))
        block = walk[stage % len(walk)]
        return Plan(blocks=(block,), spec=f"lift:block={block}")


@register("lift", help={
    "order": "top_down (default), bottom_up or random: the order blocks take their turn",
    **STAGE_HELP,
    "blocks": "the blocks that take turns (default: all)",
    "seed": "seed of the random order",
}, schedule=True, choices={"order": ORDERS})
def lift(layers: LayerMap, order: str = "top_down", steps: int = 0, epochs: int = 1, blocks: BlockList = (),
         seed: int = 0) -> Lift:
    """LIFT (OpenReview u0INlprg3U): one block trains per phase, walking top-down; backprop stops below it."""
    _check_length("lift", steps, epochs)
    if order not in ORDERS:
        raise FreezetuneError(f"unknown lift order {order!r}; choose from {', '.join(ORDERS)}")
    chosen = blocks or tuple(range(layers.num_blocks))
    for index in chosen:
        layers.check_block(index)
    walk = tuple(sorted(chosen, reverse=order != "bottom_up"))
    return Lift(walk, steps, epochs, order, seed)


@dataclass(frozen=True)
class GradualUnfreeze:
    step_determined = True  # plans depend on step and epoch only: the prefix cache reads them ahead
    num_blocks: int
    steps: int
    epochs: int
    multipliers: tuple[tuple[str, float], ...]  # discriminative rates of every block
    spec: str = "gradual_unfreeze"

    @property
    def rate_plan(self) -> Plan:  # ULMFiT's one rate serves the whole model, lower blocks scaled down
        return Plan(blocks=tuple(range(self.num_blocks)))

    def plan_at(self, step: int, epoch: int, observations: dict[str, Any]) -> Plan:
        open_blocks = min(stage_of(step, epoch, self.steps, self.epochs), self.num_blocks)
        blocks = tuple(range(self.num_blocks - open_blocks, self.num_blocks))
        return Plan(blocks=blocks, lr_multipliers=self.multipliers, spec=f"gradual_unfreeze:top={open_blocks}")


@register("gradual_unfreeze", help={
    **STAGE_HELP,
    "lr_decay": "discriminative rates: each block below the top gets lr / lr_decay more (ULMFiT: 2.6)",
}, schedule=True)
def gradual_unfreeze(layers: LayerMap, steps: int = 0, epochs: int = 1, lr_decay: float = 2.6) -> GradualUnfreeze:
    """ULMFiT gradual unfreezing (arXiv 1801.06146): head first, then one more block from the top each stage."""
    _check_length("gradual_unfreeze", steps, epochs)
    every_block = Plan(blocks=tuple(range(layers.num_blocks)))
    return GradualUnfreeze(layers.num_blocks, steps, epochs, discriminative(every_block, layers, lr_decay))


@dataclass(frozen=True)
class Lisa:
    step_determined = True  # plans depend on step and epoch only: the prefix cache reads them ahead
    num_blocks: int
    gamma: int
    interval: int
    seed: int
    spec: str = "lisa"

    @property
    def rate_plan(self) -> Plan:
        return Plan(blocks=tuple(range(self.gamma)), embeddings=True)

    def plan_at(self, step: int, epoch: int, observations: dict[str, Any]) -> Plan:
        stage = step // self.interval
        blocks = tuple(sorted(_seeded(self.seed, stage).sample(range(self.num_blocks), self.gamma)))
        return Plan(blocks=blocks, embeddings=True, spec=f"lisa:blocks={','.join(map(str, blocks))}")


@register("lisa", primary="gamma", help={
    "gamma": "how many blocks train at a time",
    "interval": "optimizer steps between re-draws",
    "seed": "seed of the draws",
}, schedule=True)
def lisa(layers: LayerMap, gamma: int = 2, interval: int = 20, seed: int = 0) -> Lisa:
    """LISA (arXiv 2403.17919): embeddings and head always train; gamma random blocks, re-drawn every interval steps."""
    if not 1 <= gamma <= layers.num_blocks:
        raise FreezetuneError(f"lisa needs 1 <= gamma <= {layers.num_blocks} (this model's blocks), got {gamma}")
    if interval < 1:
        raise FreezetuneError(f"lisa needs interval >= 1 steps, got {interval}")
    return Lisa(layers.num_blocks, gamma, interval, seed)


@dataclass(frozen=True)
class HalfFineTuning:
    step_determined = True  # plans depend on step and epoch only: the prefix cache reads them ahead
    pools: tuple[tuple[tuple[str, ...], ...], ...]  # per (block, kind): its weight groups (one module's tensors)
    num_blocks: int
    steps: int
    epochs: int
    seed: int
    spec: str = "hft"

    @property
    def rate_plan(self) -> Plan:
        return Plan(blocks=tuple(range(self.num_blocks)))

    def plan_at(self, step: int, epoch: int, observations: dict[str, Any]) -> Plan:
        stage = stage_of(step, epoch, self.steps, self.epochs)
        draw = _seeded(self.seed, stage)
        tensors = [name for pool in self.pools for group in draw.sample(pool, math.ceil(len(pool) / 2))
                   for name in group]
        return Plan(blocks=tuple(range(self.num_blocks)), tensors=tuple(tensors), spec=f"hft:stage={stage}")


def weight_pools(layers: LayerMap) -> tuple[tuple[tuple[str, ...], ...], ...]:
    """Per block and kind (attention, ffn, norm): the modules holding weights, each with its tensors."""
    pools = []
    for index in range(layers.num_blocks):
        by_kind: dict[str, dict[str, list[str]]] = {}
        for name in layers.units[block_unit(index)]:
            module = name.rsplit(".", 1)[0]
            by_kind.setdefault(layers.groups[name], {}).setdefault(module, []).append(name)
        pools += [tuple(tuple(names) for names in modules.values()) for modules in by_kind.values()]
    return tuple(pools)


@register("hft", help={
    **STAGE_HELP,
    "seed": "seed of the draws",
}, schedule=True)
def hft(layers: LayerMap, steps: int = 0, epochs: int = 1, seed: int = 0) -> HalfFineTuning:
    """Half Fine-Tuning (arXiv 2404.18466): half of each block's attention, FFN and norm groups train, re-drawn."""
    _check_length("hft", steps, epochs)
    return HalfFineTuning(weight_pools(layers), layers.num_blocks, steps, epochs, seed)
