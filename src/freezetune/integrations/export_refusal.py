"""The one line an export prints when its tool cannot say what a plan trains."""

from __future__ import annotations

from dataclasses import replace

from freezetune.core.errors import FreezetuneError
from freezetune.core.plan import Plan
from freezetune.integrations.spec_text import spec_text


def cannot_express(tool: str, why: str, nearest: Plan | None = None, *, instead: str = "") -> FreezetuneError:
    """``axolotl cannot express this plan (WHY); the nearest plan it can: --strategy SPEC``."""
    where = f"; the nearest plan it can: --strategy {spec_text(nearest)}" if nearest is not None else ""
    return FreezetuneError(f"{tool} cannot express this plan ({why}){where}{instead}")


def without_rates(plan: Plan, tool: str) -> Plan:
    """``plan`` when it trains every unit at one rate; a tool with one learning rate refuses the others."""
    if plan.lr_multipliers or plan.tensor_lr_multipliers or plan.lr_rescale:
        flat = replace(plan, lr_multipliers=(), tensor_lr_multipliers=(), lr_rescale="")
        raise cannot_express(tool, "its units train at different learning rates; the tool has one", flat)
    if plan.retention_floor is not None:
        raise cannot_express(tool, "its retention floor picks the kept evaluation in freezetune's own loop",
                             replace(plan, retention_floor=None))
    return plan
