"""``auto``'s default objective: the cheapest plan whose expected task metric is within noise of the best.

Two numbers per candidate plan (a frozen-prefix depth d = 0..L) decide:

* its **predicted loss**: the points of the task metric it is expected to give up against training
  every block. Freezing blocks 0..d-1 gives up their share of the per-block signal (what each block
  offers when trained, :func:`block_gain`), times :data:`LOSS_SCALE`, the points lost when the
  signal's whole mass is frozen: predicted_loss(d) = LOSS_SCALE · units · Σ_{b<d} gain_b / Σ_b gain_b,
  where ``units`` converts accuracy points into the metric's (:func:`metric_units`: 2 for MCC, which
  moves twice as far as accuracy on the same predictions — 2·acc − 1 for a balanced binary task).
* its **predicted cost** (:mod:`freezetune.scoring.plan_cost`), a share of full fine-tuning's time.

The **noise** is the metric's sampling error on the user's validation rows
(:func:`freezetune.measure.metrics.sampling_error`: 0.5/√n for accuracy and F1, 1/√n for MCC, 2.2
points of accuracy on 500 rows): the validation data cannot rank two plans closer than that, so the
selection cannot either. The choice is the cheapest plan whose predicted loss is within the noise of
the smallest (ties: the smaller loss). More validation rows resolve finer differences, so they buy
deeper plans, and a noisier metric (MCC) accepts a shallower one. docs/scoring.md argues the choice
and gives the leave-one-task-out evidence for the signal and the constant.
"""

from __future__ import annotations

from collections.abc import Sequence

from freezetune.core.errors import FreezetuneError
from freezetune.measure.metrics import sampling_error

# Points of the task metric predicted to be lost when every block that carries gradient signal is
# frozen. One constant for every task and model, set leave-one-task-out on bench/protocol.yaml
# (bench/freeze_loto.py; docs/scoring.md, "The default objective").
LOSS_SCALE = 30.0


def metric_units(metric: str) -> float:
    """How many points of ``metric`` one point of accuracy is worth: the ratio of their sampling spreads
    (1 for accuracy and F1, 2 for MCC); 1 for a metric without a known spread."""
    spread = sampling_error(metric, 1)
    return spread / sampling_error("accuracy", 1) if spread else 1.0


def block_gain(relative_gradient: Sequence[float], support: Sequence[float] | None) -> list[float]:
    """Per block, what training it is expected to give: its relative gradient norm (``gradient`` scorer's
    raw score) times the share of that gradient the training rows resolve above their own sampling noise,
    1 - noise scale / rows (0 for a block the rows cannot resolve; 1 when no support is known)."""
    if support is None:
        return [max(0.0, float(g)) for g in relative_gradient]
    if len(support) != len(relative_gradient):
        raise FreezetuneError(f"{len(relative_gradient)} block scores but {len(support)} support values")
    return [max(0.0, float(g)) * max(0.0, 1.0 - 1.0 / s) if s > 0 else 0.0
            for g, s in zip(relative_gradient, support)]


def predicted_loss(gains: Sequence[float], scale: float = LOSS_SCALE) -> list[float]:
    """Points lost by each frozen-prefix depth d = 0..L: ``scale`` times the gain share of blocks 0..d-1."""
    total = sum(gains)
    if total <= 0:
        return [0.0] * (len(gains) + 1)
    return [scale * sum(gains[:d]) / total for d in range(len(gains) + 1)]


def within_noise(losses: Sequence[float], noise: float) -> list[int]:
    """The candidates whose predicted loss is within ``noise`` of the smallest."""
    best = min(losses)
    return [i for i, loss in enumerate(losses) if loss <= best + noise + 1e-12]


def within_noise_choice(losses: Sequence[float], costs: Sequence[float], noise: float) -> int:
    """The cheapest candidate within ``noise`` of the best predicted loss (ties: the smaller loss, then the
    earlier candidate)."""
    if len(losses) != len(costs) or not losses:
        raise FreezetuneError(f"{len(losses)} predicted losses but {len(costs)} predicted costs")
    return min(within_noise(losses, noise), key=lambda i: (costs[i], losses[i], i))
