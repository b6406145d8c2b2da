"""``--report-to tensorboard``: training loss, rate and every evaluation metric as TensorBoard scalars.

Events go to ``RUN/tensorboard/``, where ``tensorboard --logdir RUN`` (or a parent folder holding
several runs) finds them. Tags follow the usual names: ``train/loss``, ``train/lr``, ``eval/<metric>``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from freezetune.core.config import TrainConfig
from freezetune.core.errors import FreezetuneError
from freezetune.measure.metrics import scalar_metrics
from freezetune.training.callbacks import Callback

FOLDER = "tensorboard"


def check_report_to(config: TrainConfig, output: str | None) -> None:
    """Refuse ``--report-to tensorboard`` before any model loads when it could not write anything."""
    if config.report_to != "tensorboard":
        return
    if importlib.util.find_spec("tensorboard") is None:
        raise FreezetuneError("--report-to tensorboard needs the tensorboard package: pip install tensorboard "
                              "(or drop --report-to)")
    if output is None:
        raise FreezetuneError("--report-to tensorboard writes into the run folder: give --output")


class TensorBoardLogger(Callback):
    def __init__(self, run_folder: Path):
        self.log_dir = Path(run_folder) / FOLDER
        self.writer = None

    def on_fit_start(self, tuner) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(self.log_dir), flush_secs=10)

    def on_step_end(self, tuner, record: dict[str, Any]) -> None:
        self.writer.add_scalar("train/loss", record["loss"], record["step"])
        self.writer.add_scalar("train/lr", record["lr"], record["step"])

    def on_evaluate(self, tuner, metrics: dict[str, Any]) -> None:
        for key, value in scalar_metrics(metrics, tuner.task.directions).items():
            self.writer.add_scalar(f"eval/{key}", value, metrics["step"])

    def on_fit_end(self, tuner, result) -> None:
        self.close()

    def close(self) -> None:
        """Also called when the fit stops on an error or a signal: no writer thread outlives its run."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
