"""What hears a run's training loop: the log lines, and in a run folder metrics.jsonl, timeline.png, TensorBoard."""

from __future__ import annotations

from typing import Any

from freezetune.core.config import TrainConfig
from freezetune.io.rundir import RunDir
from freezetune.runs.progress_log import ProgressLog
from freezetune.runs.tensorboard_log import TensorBoardLogger
from freezetune.runs.timeline import Timeline
from freezetune.training.callbacks import Callback


def listeners(run_dir: RunDir | None, config: TrainConfig) -> list[Callback]:
    """The callbacks of one run: log lines always; the files only when it has a folder."""
    out: list[Callback] = [ProgressLog()]
    if run_dir:
        out += [MetricsLogger(run_dir), Timeline(run_dir.file("timeline.png"))]
        if config.report_to == "tensorboard":
            out.append(TensorBoardLogger(run_dir.path))
    return out


class MetricsLogger(Callback):
    """Writes step and evaluation records to ``metrics.jsonl``."""

    def __init__(self, run_dir: RunDir, every: int = 10):
        self.run_dir, self.every = run_dir, every
        self.unwritten: dict[str, Any] | None = None  # the last step, when not written yet

    def on_step_end(self, tuner, record: dict[str, Any]) -> None:
        self.unwritten = record
        if record["step"] % self.every == 0 or record["step"] < self.every:  # the first steps: a short run's curve
            self._write_step()

    def on_epoch_end(self, tuner, state, total_steps: int) -> None:
        self._write_step()  # each epoch's last step too, so the loss curve reaches every evaluation

    def _write_step(self) -> None:
        if self.unwritten is not None:
            self.run_dir.append_metrics({"kind": "train", **self.unwritten})
            self.unwritten = None

    def on_evaluate(self, tuner, metrics: dict[str, Any]) -> None:
        self.run_dir.append_metrics({"kind": "eval", **metrics})

    def on_plan_change(self, tuner, old, new) -> None:
        if old is not None:
            step = tuner.state.step if tuner.state is not None else 0
            self.run_dir.append_metrics({"kind": "plan_change", "step": step, "from": old.spec, "to": new.spec,
                                         "blocks": list(new.trainable_blocks(tuner.layers.num_blocks)),
                                         "embeddings": new.embeddings, "head": new.head})
