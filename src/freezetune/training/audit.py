"""The audit of what really trained, at the first optimizer step.

A plan says which tensors train; ``requires_grad`` and the optimizer are supposed to follow it,
but a few setups break that silently: the run goes on, the loss even falls, and blocks the plan
trains never move. So at the first step the audit checks, once:

* every tensor the plan trains got a gradient (not None) and changed in the step, unless its
  gradient is zero by construction (LoRA's ``lora_A`` while its ``lora_B`` is still zero);
* every tensor the plan freezes got no gradient, and is not the same tensor as one that trains.

A violation stops training with one line naming the tensors and the likely cause: reentrant
gradient checkpointing with frozen embeddings (the checkpointed blocks' inputs need no grad, so
their weights get none), a module outside the layer map (added after the plan was made), or a
tensor tied across units (one object under two names the layer map saw apart). Its only cost is
one copy of the trained tensors, taken before the first step and dropped after it.

Both freezetune's loop (``training/loop.py``) and the Trainer callback (``integrations/``) use it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from freezetune.core.errors import FreezetuneError
from freezetune.core.layout import LayerMap
from freezetune.core.plan import Plan

SHOWN = 3  # tensor names a violation line spells out before "and N more"


def planned_names(model: nn.Module, layers: LayerMap, plan: Plan) -> set[str]:
    """Names (as ``model.named_parameters()`` gives them) of every tensor ``plan`` trains, adapters included."""
    base = plan.trainable_names(layers)
    names = {n for n, _ in model.named_parameters(remove_duplicate=False)
             if n in base or plan._lora_trains(n, layers)}  # the same rule as Plan.apply
    return names | {alias for alias, owner in layers.tied.items() if owner in names}


@dataclass
class StepAudit:
    """Made just before the first optimizer step (gradients complete); :meth:`after` checks the step."""

    plan: Plan
    layers: LayerMap
    before: dict[str, torch.Tensor] = field(default_factory=dict)  # trained tensors' values before the step
    problems: list[str] = field(default_factory=list)
    exempt: set[str] = field(default_factory=set)  # trained, yet not expected to move in this step

    @classmethod
    def before_step(cls, model: nn.Module, layers: LayerMap, plan: Plan,
                    optimizer: torch.optim.Optimizer | None = None) -> StepAudit:
        audit = cls(plan, layers)
        planned = planned_names(model, layers, plan)
        mapped = {n for names in layers.units.values() for n in names} | set(layers.tied)
        params = dict(model.named_parameters(remove_duplicate=False))
        resting = _resting(optimizer)
        no_grad, stray, outside, tied = [], [], [], []
        for name, param in params.items():
            if name in planned:
                if param.grad is None:
                    no_grad.append(name)
                    continue
                if id(param) in resting or _zero_by_construction(name, param, params):
                    audit.exempt.add(name)
                audit.before[name] = param.detach().clone()
            elif param.grad is not None:
                (stray if name in mapped else outside).append(name)
        by_tensor: dict[int, list[str]] = {}
        for name, param in params.items():
            by_tensor.setdefault(id(param), []).append(name)
        for names in by_tensor.values():
            if any(n in planned for n in names) and any(n not in planned for n in names):
                tied.append(" = ".join(names))
        if tied:
            audit.problems.append(f"tensors tied across units: {_listed(tied)} (the layer map saw them apart, so one "
                                  "name trains what another freezes: build the map and the plan after tying weights)")
        if no_grad:
            audit.problems.append(f"{len(no_grad)} tensor(s) the plan trains got no gradient: {_listed(no_grad)} "
                                  f"({_no_grad_cause(model, plan)})")
        if outside:
            audit.problems.append(f"{len(outside)} tensor(s) outside the layer map got a gradient: {_listed(outside)} "
                                  "(a module added after the plan was made: add it before, or freeze it)")
        if stray:
            audit.problems.append(f"{len(stray)} tensor(s) the plan freezes got a gradient: {_listed(stray)} "
                                  "(requires_grad was set after the plan was applied)")
        return audit

    def after_step(self, model: nn.Module) -> None:
        """Raise one line when any check failed; the copies are dropped either way."""
        params = dict(model.named_parameters(remove_duplicate=False))
        unchanged = [n for n, value in self.before.items()
                     if n not in self.exempt and torch.equal(params[n].detach(), value)]
        self.before = {}
        problems = list(self.problems)
        if unchanged:
            problems.append(f"{len(unchanged)} tensor(s) the plan trains did not change in the step: "
                            f"{_listed(unchanged)} (the optimizer does not hold them: create it after the plan "
                            "is applied)")
        if problems:
            raise FreezetuneError(f"training audit, first step of plan {self.plan.spec!r}: " + "; ".join(problems))


def _resting(optimizer: torch.optim.Optimizer | None) -> set[int]:
    """Tensors whose group has a zero rate this step (a warm-up starting at 0): they cannot move yet."""
    if optimizer is None:
        return set()
    return {id(p) for group in optimizer.param_groups if not group.get("lr") for p in group["params"]}


def _zero_by_construction(name: str, param: nn.Parameter, params: dict[str, nn.Parameter]) -> bool:
    """LoRA's A gets a zero gradient while its B is still zero (B starts at zero), and so need not move."""
    if "lora_A" not in name or param.grad is None or param.grad.any():
        return False
    partner = params.get(name.replace("lora_A", "lora_B"))
    return partner is not None and not partner.detach().any()


def _no_grad_cause(model: nn.Module, plan: Plan) -> str:
    checkpointed = any(getattr(m, "gradient_checkpointing", False) is True for m in model.modules())
    if checkpointed and not plan.embeddings:
        return ("likely reentrant gradient checkpointing with frozen embeddings: the checkpointed blocks' inputs "
                "need no grad, so their weights get none; use gradient_checkpointing_kwargs="
                "{'use_reentrant': False}")
    return "likely a module the forward does not use, or a forward run under torch.no_grad()"


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:SHOWN])
    return shown + (f" and {len(names) - SHOWN} more" if len(names) > SHOWN else "")
