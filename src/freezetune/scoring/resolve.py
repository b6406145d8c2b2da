"""Resolving a strategy before training starts: the one place ``auto`` and ``auto_rgn`` get their data.

The layer that runs training calls :func:`resolve_strategy` with the model, the task and a
labelled sample; it gets back what the Finetuner takes (a Plan or a Schedule), the callbacks
the plan needs while it trains (Auto-RGN's per-epoch re-measurement, a retention floor's guard)
and what any scoring measured (for scores.json and selection.txt).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from freezetune.core.errors import FreezetuneError
from freezetune.core.layout import LayerMap
from freezetune.core.plan import Plan
from freezetune.scoring.retention_guard import RetentionGuard
from freezetune.scoring.rgn import RgnCallback
from freezetune.strategies.registry import ResolveContext, resolve
from freezetune.strategies.schedules import Schedule
from freezetune.tasks.task import Task
from freezetune.training.callbacks import Callback


@dataclass
class Resolution:
    strategy: Plan | Schedule
    callbacks: list[Callback] = field(default_factory=list)
    selections: list[dict[str, Any]] = field(default_factory=list)  # {"explanation", "seconds", "scores" or "race"}
    retention: Callable[[nn.Module], float] | None = None  # the run's retention measure, for a plan's floor

    def fresh(self) -> Resolution:
        """The same plan and selections with new callbacks: for another run of the same resolution."""
        return Resolution(self.strategy, callbacks_for(self.strategy, self.retention), self.selections,
                          self.retention)

    @property
    def scoring_s(self) -> float:
        return sum(s["seconds"] for s in self.selections)


def resolve_strategy(strategy: str | Plan | Schedule, model: nn.Module, *, task: Task | None = None,
                     sample: Sequence[dict] | Callable[[], Sequence[dict]] | None = None, **data: Any) -> Resolution:
    """Resolve ``strategy`` for ``model``; measuring strategies score on ``sample`` (labelled batches).

    ``data`` fills the rest of :class:`ResolveContext` (training and validation sets, the run's
    settings, caches, a retention measure) for strategies that train candidates.
    """
    if isinstance(strategy, Schedule):
        return Resolution(strategy)
    context = ResolveContext(model=model, task=task, sample=sample, **data)
    resolved = resolve(strategy, LayerMap.from_model(model), context)
    return Resolution(resolved, callbacks_for(resolved, context.retention), context.selections, context.retention)


def callbacks_for(plan: Plan | Schedule, retention: Callable[[nn.Module], float] | None = None) -> list[Callback]:
    """What a plan needs while it trains, beyond the loop itself."""
    if not isinstance(plan, Plan):
        return []
    callbacks: list[Callback] = [RgnCallback()] if plan.lr_rescale == "rgn" else []
    if plan.retention_floor is not None:
        if retention is None:
            raise FreezetuneError("a retention floor is checked at every evaluation: run with --retention sts, ppl "
                                  "or cka")
        callbacks.append(RetentionGuard(plan.retention_floor, retention))
    return callbacks
