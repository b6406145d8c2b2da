"""Auto-RGN (after arXiv 2210.11466): every tensor's learning rate scaled by its relative gradient norm.

RGN_t = ‖g_t‖ / ‖θ_t‖ is how far one plain gradient step would move tensor t relative to its size.
Lee et al. train every tensor with lr_t = lr · RGN_t / max RGN, so the layers the task pulls on
hardest move fastest and the rest barely move. What freezetune does, exactly:

* the first epoch's multipliers are the ``gradient`` scorer's per-tensor RGN on the run's scoring
  sample (eval mode, at most 256 rows), measured while the plan resolves; they are part of the
  plan (``Plan.tensor_lr_multipliers``), so plan.json shows them;
* every later epoch's are re-measured from the epoch before: the mean over its optimizer steps of
  each tensor's RGN (before clipping), which costs one norm per tensor per step and no extra pass;
* normalisation is ours: by the largest RGN among the *blocks'* tensors, capped at 1. A freshly
  initialised head has a far larger RGN than any pretrained tensor; dividing by it would shrink
  every block's rate to almost nothing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from freezetune.core.layout import LayerMap
from freezetune.core.plan import Plan
from freezetune.scoring.auto import scored_model
from freezetune.scoring.scorers import score
from freezetune.strategies.registry import ResolveContext, register
from freezetune.training.callbacks import Callback


def multipliers(rgn: dict[str, float], reference: Iterable[str]) -> dict[str, float]:
    """RGN / the largest RGN among ``reference`` tensors, capped at 1 (0 when nothing moved)."""
    top = max((rgn[n] for n in reference if n in rgn and math.isfinite(rgn[n])), default=0.0)
    return {n: (min(1.0, v / top) if top > 0 and math.isfinite(v) else 0.0) for n, v in rgn.items()}


def unit_means(values: dict[str, float], layers: LayerMap) -> dict[str, float]:
    """Parameter-weighted mean multiplier of each unit (embeddings, block.i, head) that has any."""
    params = dict(layers.model.named_parameters())
    means = {}
    for unit, names in layers.units.items():
        known = [n for n in names if n in values]
        size = sum(params[n].numel() for n in known)
        if size:
            means[unit] = sum(values[n] * params[n].numel() for n in known) / size
    return means


@register("auto_rgn", needs_context=True)
def auto_rgn(layers: LayerMap, context: ResolveContext) -> Plan:
    """Auto-RGN: everything trains, each tensor's rate scaled by its relative gradient norm, every epoch."""
    return rgn_plan(layers, context)


def rgn_plan(layers: LayerMap, context: ResolveContext, *, embeddings: bool = True) -> Plan:
    """Everything trains (the embeddings too unless ``embeddings=False``), with per-tensor rates."""
    model = scored_model(layers, context, "auto_rgn")
    result = score(model, context.batches("auto_rgn"), "gradient", layers=layers, task=context.task)
    # The scorer's tensor scores are RGN / the best block tensor's RGN: the same normalisation.
    first = {n: min(1.0, v) for n, v in result.tensor_scores.items()}
    means = unit_means(first, layers)
    context.selections.append({"scores": result, "seconds": result.seconds, "explanation": "\n".join([
        f"auto_rgn: first-epoch rate multipliers on {result.samples} examples (parameter-weighted mean per unit "
        "of RGN / the largest block tensor's RGN, capped at 1); re-measured after every epoch",
        *(f"{unit:<12} {value:.3f}" for unit, value in means.items()),
    ])})
    return Plan(
        blocks=tuple(range(layers.num_blocks)),
        embeddings=embeddings,
        tensor_lr_multipliers=tuple(sorted(first.items())),
        lr_rescale="rgn",
    )


class RelativeGradientNorms:
    """Sums every trained tensor's RGN over an epoch's optimizer steps; rescales the rates."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.steps = 0

    @torch.no_grad()
    def add(self, optimizer: torch.optim.Optimizer) -> None:
        """Call after backward, before clipping: one RGN per tensor with a gradient."""
        self.steps += 1
        for group in optimizer.param_groups:
            for name, param in zip(group["names"], group["params"]):
                if param.grad is None:
                    continue
                weight = max(float(param.detach().float().norm()), 1e-3 * math.sqrt(param.numel()))
                self.sums[name] = self.sums.get(name, 0.0) + float(param.grad.detach().float().norm()) / weight

    def rescale(self, optimizer: torch.optim.Optimizer, lr: float, reference: Iterable[str]) -> dict[str, float]:
        """Set every group's base rate to lr x its tensor's new multiplier; start a new epoch."""
        if not self.steps:
            return {}
        names = [n for group in optimizer.param_groups for n in group["names"]]
        mean = {n: self.sums.get(n, 0.0) / self.steps for n in names}
        new = multipliers(mean, reference)
        for group in optimizer.param_groups:
            (name,) = group["names"]  # per-tensor plans have one tensor per group
            group["base_lr"] = lr * new[name]
        self.sums, self.steps = {}, 0
        return new

    def state_dict(self) -> dict[str, Any]:
        return {"sums": dict(self.sums), "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sums, self.steps = dict(state["sums"]), int(state["steps"])


class RgnCallback(Callback):
    """Auto-RGN's re-measurement: each epoch's mean RGN per tensor sets the next epoch's rates."""

    def __init__(self) -> None:
        self.norms = RelativeGradientNorms()
        self.log: list[dict[str, float]] = []  # per-unit rate multipliers, epoch by epoch

    def on_fit_start(self, tuner) -> None:
        self.log = [unit_means(dict(tuner.plan.tensor_lr_multipliers), tuner.layers)]

    def before_optimizer_step(self, tuner) -> None:
        self.norms.add(tuner.optimizer)

    def on_epoch_end(self, tuner, state, total_steps: int) -> None:
        if state.step < total_steps:  # the last epoch's rates would never be used
            new = self.norms.rescale(tuner.optimizer, tuner.lr, tuner.layers.block_of_tensor())
            self.log.append(unit_means(new, tuner.layers))

    def on_fit_end(self, tuner, result) -> None:
        result.costs["rgn_lr_multipliers"] = self.log

    def state_dict(self) -> dict[str, Any]:
        return {"log": self.log, "sums": self.norms.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.log = state["log"]
        self.norms.load_state_dict(state["sums"])
