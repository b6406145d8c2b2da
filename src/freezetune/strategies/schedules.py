"""Schedules: a plan per training step. The loop asks ``plan_at`` before every step.

``plan_at(step, epoch, observations)`` gets the optimizer steps taken so far, the epoch and what
the loop observed (``last_loss``); it returns the plan for the next step. When the plan differs
from the current one the loop switches: ``requires_grad`` is re-applied, optimizer state of
parameters that stopped training is freed, newly trainable ones get fresh state and really
update, and every callback hears ``on_plan_change``. A plan that never changes is a
:class:`StaticSchedule`; LIFT, gradual unfreezing, LISA and the like are schedules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from freezetune.core.plan import Plan


@runtime_checkable
class Schedule(Protocol):
    """``plan_at`` gives the plan for a step. A schedule whose plans depend on the step and epoch
    alone may say so with ``step_determined = True``: the frozen-prefix cache then reads its plans
    ahead and stores every boundary it will visit in one pass."""

    def plan_at(self, step: int, epoch: int, observations: dict[str, Any]) -> Plan: ...


def rate_plan(schedule: Schedule) -> Plan:
    """The plan a schedule's default learning rate is chosen for.

    A schedule may name it (``rate_plan``: gradual unfreezing starts with the head alone, yet its
    one rate must suit every block it will open); otherwise its first plan decides.
    """
    named = getattr(schedule, "rate_plan", None)
    return named if isinstance(named, Plan) else schedule.plan_at(0, 0, {})


@dataclass(frozen=True)
class StaticSchedule:
    """A plan that never changes."""

    plan: Plan

    def plan_at(self, step: int, epoch: int, observations: dict[str, Any]) -> Plan:
        return self.plan
