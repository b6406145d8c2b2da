"""Learning-rate policy: the default peak rate of a plan, and discriminative (per-block) rates."""

from __future__ import annotations

from freezetune.core.errors import FreezetuneError
from freezetune.core.layout import EMBEDDINGS, HEAD, LayerMap, block_unit
from freezetune.core.plan import Plan


def default_lr(plan: Plan, layers: LayerMap) -> float:
    """The best rates on MiniLM grow as fewer parameters train (see the README's evidence)."""
    n = layers.num_blocks
    blocks = plan.trainable_blocks(n)
    if plan.lora is not None:
        return 2e-3
    if not blocks and not plan.embeddings:
        return 3e-3
    if plan.modules and set(plan.modules) <= {"bias", "norm"}:
        return 1e-3
    if len(blocks) <= n / 3 and not plan.embeddings:
        return 3e-4
    return 1e-4


def discriminative(plan: Plan, layers: LayerMap, decay: float) -> tuple[tuple[str, float], ...]:
    """ULMFiT's discriminative rates: each trainable block below the top one gets lr / decay more."""
    if decay <= 0:
        raise FreezetuneError(f"lr_decay must be positive, got {decay}")
    top = layers.num_blocks - 1
    multipliers = [(block_unit(i), decay ** -(top - i)) for i in plan.blocks]
    if plan.embeddings:
        multipliers.append((EMBEDDINGS, decay ** -(top + 1)))
    multipliers.append((HEAD, 1.0))
    return tuple(multipliers)
