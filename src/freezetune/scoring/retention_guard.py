"""``auto:...:retention=R``: the run keeps the best weights that keep the share R of the pretrained skill.

What a plan forgets cannot be read from the untrained model, and a short probe with its schedule
compressed does not show it either: it depends on the task's data as much as on the plan. On
MiniLM, full fine-tuning keeps 70 % of its STS-B skill after 4 epochs on 1,000 SST-2 rows and
93 % after 4 on 2,000 CoLA rows, yet a quarter-length probe keeps 98.4 % on both (docs/scoring.md).
The run's own evaluations do show it.

So the floor is enforced where skill is lost, on the run itself. The method (score or race)
chooses the plan for the task; the plan carries the floor; :class:`RetentionGuard` measures the
skill kept at every evaluation (one pass of the retention reference, about 1.5 s for STS-B on
MiniLM on a CPU), and the training loop keeps as best only an evaluation that keeps the floor:

- the run keeps the best evaluation whose weights keep at least R;
- the first evaluation that breaks the floor ends the run: training longer mostly moves the
  weights further from the base (skill kept can rise between evaluations, by 1–2 points in the
  measurements, rarely back over a floor it fell below), and it costs time for weights that would
  likely not be kept;
- if even the first evaluation breaks it, that one is kept (the earliest weights, which usually keep the most) and
  the run says so.

More evaluations (``--eval-every``) give the guard finer points to stop at.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from torch import nn

from freezetune.training.callbacks import KEEPS_SKILL, Callback

log = logging.getLogger("freezetune")


class RetentionGuard(Callback):
    """Measures the skill kept at every evaluation and marks the evaluations that keep the floor."""

    def __init__(self, floor: float, measure: Callable[[nn.Module], float]):
        self.floor, self.measure = floor, measure
        self.evaluations: list[dict[str, Any]] = []
        self.seconds = 0.0

    def on_evaluate(self, tuner, metrics: dict[str, Any]) -> None:
        started = time.perf_counter()
        kept = self.measure(tuner.model)
        self.seconds += time.perf_counter() - started
        metrics["retention_kept"] = kept
        metrics[KEEPS_SKILL] = kept >= self.floor
        self.evaluations.append({"step": metrics.get("step"), "epoch": metrics.get("epoch"), "kept": kept})
        log.info("retention at step %s: %.1f%% of the pretrained skill kept (floor %.0f%%)%s", metrics.get("step"),
                 100 * kept, 100 * self.floor, "" if kept >= self.floor else ": below the floor, training stops")

    def on_fit_end(self, tuner, result) -> None:
        kept = [e for e in self.evaluations if e["kept"] >= self.floor]
        result.costs["retention_guard"] = {"floor": self.floor, "evaluations": self.evaluations,
                                           "seconds": self.seconds, "floor_kept": bool(kept)}
        if self.evaluations and not kept:
            log.warning("retention floor %.0f%%: no evaluation kept it; the first evaluation's weights are kept "
                        "(%.1f%%). Freeze more (a deeper depth:d) or lower the learning rate", 100 * self.floor,
                        100 * self.evaluations[0]["kept"])

    def state_dict(self) -> Any:
        return {"evaluations": self.evaluations, "seconds": self.seconds}

    def load_state_dict(self, state: Any) -> None:
        self.evaluations, self.seconds = list(state["evaluations"]), float(state["seconds"])
