"""What a fit carries from step to step, and what it returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from freezetune.core.plan import Plan


@dataclass
class FitResult:
    best_metrics: dict[str, Any]
    best_step: int
    history: list[dict[str, Any]]
    costs: dict[str, Any]
    plan: Plan
    lr: float
    stopped_early: bool = False
    trained_names: list[str] = field(default_factory=list)  # every parameter that trained at some point


@dataclass
class TrainState:
    step: int = 0  # optimizer steps taken
    epoch: int = 0
    best_value: float | None = None
    best_step: int = 0
    best_metrics: dict[str, Any] = field(default_factory=dict)
    best_weights: dict[str, torch.Tensor] | None = None
    evals_without_improvement: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    observations: dict[str, Any] = field(default_factory=dict)
    batches_done: int = 0  # batches of the current epoch already trained on
    epoch_order: list[torch.Tensor] = field(default_factory=list)  # loader RNG at the epoch's start
    resume_rng: dict[str, Any] | None = None
    # Training time spent by earlier processes of this run (restored from a resumable state):
    # train_time_s in all, epoch_times_s of finished epochs, epoch_s of the epoch it stopped in.
    elapsed: dict[str, Any] = field(default_factory=lambda: {"train_time_s": 0.0, "epoch_times_s": [], "epoch_s": 0.0})

    BEST_FIELDS = ("best_value", "best_step", "best_metrics", "best_weights", "evals_without_improvement", "history")
