"""The Trainer's optimizer, fitted to a run's plans from a callback.

``Trainer.create_optimizer`` puts every parameter with ``requires_grad`` in two groups (weight
decay or not) before the first callback that sees the optimizer (``on_train_begin``). The
callback opens every tensor a run may train before that, then here:

* the optimizer is narrowed to the tensors some plan of the run trains (and refused when it
  lacks one: an optimizer built before the callback set things up);
* each group is split by the plans' rate multipliers (gradual unfreezing's discriminative rates),
  and the learning-rate scheduler follows the new groups;
* a tensor that stops training loses its state. A frozen tensor has no gradient, and the
  optimizers skip such tensors: no update, no weight decay; when it trains again its state
  starts fresh, as in freezetune's own loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from freezetune.core.errors import FreezetuneError


def inner(optimizer):
    """The torch optimizer under accelerate's wrapper."""
    return getattr(optimizer, "optimizer", optimizer)


def narrow(optimizer, keep: dict[int, str]) -> None:
    """Keep in ``optimizer`` only the tensors in ``keep`` (id -> name); refuse when one is missing."""
    present = {id(p) for group in inner(optimizer).param_groups for p in group["params"]}
    missing = [name for key, name in keep.items() if key not in present]
    if missing:
        raise FreezetuneError(f"the Trainer's optimizer lacks {len(missing)} tensor(s) the plan trains ({missing[0]}, "
                              "...): pass FreezetuneCallback in Trainer(callbacks=[...]) and let the Trainer create "
                              "the optimizer, so that it holds every tensor the run trains")
    for group in inner(optimizer).param_groups:
        group["params"] = [p for p in group["params"] if id(p) in keep]


def split_by_rate(optimizer, scheduler, rate_of: Callable[[torch.nn.Parameter], float]) -> None:
    """One group per (original group, rate multiplier); the scheduler's base rates follow."""
    torch_optimizer = inner(optimizer)
    groups, origin = [], []
    for index, group in enumerate(torch_optimizer.param_groups):
        by_rate: dict[float, list] = {}
        for param in group["params"]:
            by_rate.setdefault(rate_of(param), []).append(param)
        for rate, params in by_rate.items():
            split = {**group, "params": params, "lr": group["lr"] * rate}
            if "initial_lr" in group:
                split["initial_lr"] = group["initial_lr"] * rate
            groups.append(split)
            origin.append(index)
    torch_optimizer.param_groups = groups
    schedule = getattr(scheduler, "scheduler", scheduler)  # accelerate wraps it too
    if schedule is None:
        return
    lambdas = getattr(schedule, "lr_lambdas", None)
    if lambdas is None or not hasattr(schedule, "base_lrs"):
        raise FreezetuneError(f"per-block learning rates need a LambdaLR schedule (every lr_scheduler_type but "
                              f"reduce_lr_on_plateau); this run has {type(schedule).__name__}")
    schedule.lr_lambdas = [lambdas[i] for i in origin]
    schedule.base_lrs = [g.get("initial_lr", g["lr"]) for g in groups]
    schedule._last_lr = [g["lr"] for g in groups]


def drop_state(optimizer, params: Iterable[torch.nn.Parameter]) -> None:
    """Forget the moments of tensors that stopped training (they would pin memory, then resume stale)."""
    state = inner(optimizer).state
    for param in params:
        state.pop(param, None)


def state_bytes(optimizer) -> int:
    """Bytes of every tensor in the optimizer's state."""
    return sum(v.numel() * v.element_size() for s in inner(optimizer).state.values() for v in s.values()
               if isinstance(v, torch.Tensor))
