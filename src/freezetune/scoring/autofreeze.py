"""``autofreeze`` (AutoFreeze, Liu et al., arXiv 2102.01386): freeze the prefix whose gradients have settled.

Training starts in full. Over every ``interval`` optimizer steps the schedule sums each block's
gradient norm (before clipping); at the end of an interval it compares each block's mean with the
previous interval's. A block has converged when that relative change is at most ``tolerance``.
The frozen prefix then grows over the converged blocks directly above it (the paper freezes front
layers only, so backward never reaches them); the embeddings freeze with block 0, and the top
block always trains.

Ours, not the paper's: the paper ranks the change rates against a percentile of all layers'; we
use an absolute tolerance, so one slow block cannot make its neighbours look converged. The
decision is a function of the measured norms, so the schedule keeps them as callback state and
a resumed run decides exactly as an uninterrupted one.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from freezetune.core.errors import FreezetuneError
from freezetune.core.layout import LayerMap
from freezetune.core.plan import Plan
from freezetune.strategies.registry import register
from freezetune.training.callbacks import Callback


class AutoFreeze(Callback):
    def __init__(self, num_blocks: int, interval: int, tolerance: float):
        self.num_blocks, self.interval, self.tolerance = num_blocks, interval, tolerance
        self.spec = f"autofreeze:interval={interval}:tolerance={tolerance:g}"
        self.depth = 0  # blocks 0..depth-1 frozen
        self.sums = [0.0] * num_blocks  # gradient norms summed over the current interval
        self.steps = 0
        self.previous: list[float] | None = None  # last interval's means
        self.log: list[dict[str, Any]] = []  # {step, change per block, depth}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AutoFreeze) and (other.num_blocks, other.interval, other.tolerance) == (
            self.num_blocks, self.interval, self.tolerance)

    @property
    def rate_plan(self) -> Plan:
        return self._plan(0)

    def _plan(self, depth: int) -> Plan:
        blocks = tuple(range(depth, self.num_blocks))
        return Plan(blocks=blocks, embeddings=depth == 0, spec=f"autofreeze:depth={depth}")

    def plan_at(self, step: int, epoch: int, observations: dict[str, Any]) -> Plan:
        return self._plan(self.depth)

    # ------------------------------------------------------------------ measuring, as a callback
    @torch.no_grad()
    def before_optimizer_step(self, tuner) -> None:
        prefix = tuner.layers.block_path + "."
        squares = [0.0] * self.num_blocks
        for name, param in tuner.model.named_parameters():
            if param.grad is not None and name.startswith(prefix):
                squares[int(name[len(prefix):].split(".", 1)[0])] += float(param.grad.detach().float().pow(2).sum())
        self.sums = [s + math.sqrt(q) for s, q in zip(self.sums, squares)]
        self.steps += 1

    def on_step_end(self, tuner, record: dict[str, Any]) -> None:
        if self.steps < self.interval:
            return
        means = [s / self.steps for s in self.sums]
        if self.previous is not None:
            change = [abs(m - p) / p if p > 0 else math.inf for m, p in zip(means, self.previous)]
            depth = self.depth
            while depth < self.num_blocks - 1 and change[depth] <= self.tolerance:
                depth += 1
            self.log.append({"step": record["step"], "change": change, "depth": depth})
            self.depth = depth
        self.previous = means[:]
        self.sums, self.steps = [0.0] * self.num_blocks, 0

    def on_fit_end(self, tuner, result) -> None:
        result.costs["autofreeze"] = self.log

    def state_dict(self) -> dict[str, Any]:
        return {"depth": self.depth, "sums": self.sums, "steps": self.steps, "previous": self.previous,
                "log": self.log}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.depth, self.sums, self.steps = state["depth"], list(state["sums"]), state["steps"]
        self.previous, self.log = state["previous"], list(state["log"])


@register("autofreeze", help={
    "interval": "optimizer steps per measurement interval",
    "tolerance": "a block has converged when its mean gradient norm changes by at most this share between intervals",
}, schedule=True)
def autofreeze(layers: LayerMap, interval: int = 10, tolerance: float = 0.1) -> AutoFreeze:
    """AutoFreeze (arXiv 2102.01386): train in full, then freeze the front blocks whose gradients settled."""
    if interval < 1 or not tolerance >= 0:
        raise FreezetuneError(f"autofreeze needs interval >= 1 and tolerance >= 0, got {interval} and {tolerance}")
    return AutoFreeze(layers.num_blocks, interval, tolerance)
