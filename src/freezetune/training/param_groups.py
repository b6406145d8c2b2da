"""Optimizer parameter groups: per unit (its rate multiplier) x weight decay or not.

A plan with per-tensor rates (Auto-RGN) gets one group per tensor instead. Every trainable
parameter lands in exactly one group, and that is asserted. State of parameters that stopped
training is dropped (it would pin memory and, worse, resume stale moments later); parameters
that start training begin with fresh state.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from freezetune.core.config import TrainConfig
from freezetune.core.errors import FreezetuneError
from freezetune.core.layout import LayerMap, is_bias
from freezetune.core.plan import Plan


def param_groups(model: nn.Module, layers: LayerMap, plan: Plan, lr: float,
                 weight_decay: float) -> list[dict[str, Any]]:
    per_tensor = plan.per_tensor_lr
    groups: dict[tuple[str, bool, str], list[tuple[str, nn.Parameter]]] = {}
    mapped = {n for names in layers.units.values() for n in names}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        unit = layers.unit_for(name)  # adapter tensors added by PEFT go with their block
        decay = name not in mapped or not (is_bias(name) or layers.groups.get(name) == "norm" or param.ndim < 2)
        groups.setdefault((unit, decay, name if per_tensor else ""), []).append((name, param))
    out = []
    for (unit, decay, tensor), members in groups.items():
        rate = lr * plan.lr_multiplier(unit, tensor or None)
        out.append({
            "params": [p for _, p in members],
            "weight_decay": weight_decay if decay else 0.0,
            "base_lr": rate,
            "lr": rate,
            "unit": unit,
            "names": [n for n, _ in members],
        })
    if not out:
        raise FreezetuneError(f"plan {plan.spec!r} trains nothing; pick a strategy that trains something")
    grouped = [id(p) for g in out for p in g["params"]]
    trainable = [id(p) for p in model.parameters() if p.requires_grad]
    assert sorted(grouped) == sorted(trainable), "a trainable parameter is in no group, or in two"
    return out


def build_optimizer(groups: list[dict[str, Any]], config: TrainConfig, lr: float,
                    previous: torch.optim.Optimizer | None = None) -> torch.optim.Optimizer:
    """The optimizer over ``groups``, carrying over the state of parameters that still train."""
    if config.optimizer == "sgd":
        optimizer = torch.optim.SGD(groups, lr=lr, momentum=config.momentum)
    else:
        optimizer = torch.optim.AdamW(groups, lr=lr)
    old_state = previous.state if previous is not None else {}
    for group in groups:
        for param in group["params"]:
            if param in old_state:
                optimizer.state[param] = old_state[param]
    return optimizer

