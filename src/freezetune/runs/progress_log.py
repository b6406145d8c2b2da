"""What a run says while it trains: one log line per epoch and one per evaluation.

These lines are the progress a user sees with ``--no-progress`` (and in a log file); the bar,
when it is on, shows the steps in between. Each line is short: the numbers that say whether
training is going well, and how long it took.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from freezetune.measure.metrics import is_better, scalar_metrics
from freezetune.measure.units import format_duration
from freezetune.training.callbacks import Callback

log = logging.getLogger("freezetune")

class ProgressLog(Callback):
    def on_fit_start(self, tuner) -> None:
        self.losses: list[float] = []
        self.epoch_started = self.last_mark = time.perf_counter()
        self.eval_s = 0.0  # evaluation time inside the current epoch, not counted as training

    def on_step_end(self, tuner, record: dict[str, Any]) -> None:
        self.losses.append(record["loss"])
        self.last_mark = time.perf_counter()

    def on_epoch_end(self, tuner, state, total_steps: int) -> None:
        now = time.perf_counter()
        mean = sum(self.losses) / len(self.losses) if self.losses else float("nan")
        log.info("epoch %d: step %d/%d, mean training loss %.4f, %s", state.epoch + 1, state.step, total_steps, mean,
                 format_duration(now - self.epoch_started - self.eval_s))
        self.losses, self.epoch_started, self.last_mark, self.eval_s = [], now, now, 0.0

    def on_evaluate(self, tuner, metrics: dict[str, Any]) -> None:
        took = time.perf_counter() - self.last_mark
        self.eval_s += took
        self.last_mark = time.perf_counter()
        monitored = tuner.config.metric
        best = is_better(monitored, metrics[monitored], tuner.state.best_value, tuner.task.directions)
        scores = scalar_metrics(metrics, tuner.task.directions)
        others = ", ".join(f"{k} {v:.4f}" for k, v in scores.items() if k != monitored)
        log.info("evaluation at step %d (epoch %d): %s %.4f%s; %s (%s)", metrics["step"], metrics["epoch"] + 1,
                 monitored, metrics[monitored], " (best so far)" if best else "", others, format_duration(took))
