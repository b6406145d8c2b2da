"""The ``Task`` protocol: what a kind of fine-tuning owns, so the training loop owns none of it.

A task decides what a batch holds besides the model's inputs (its targets), which head sits on
the backbone, the training loss, what evaluation keeps of each batch and the metrics made of
it, and what a prediction looks like. The loop only moves tensors between these calls, so a
causal language model is a second task, not an ``if`` in the loop.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn


def monitored_metric(task: Task | None, metric: str) -> str:
    """``--metric auto`` is the task's own ``default_metric`` (accuracy for a classifier, else the loss)."""
    if metric != "auto":
        return metric
    return getattr(task, "default_metric", "accuracy" if task is None else "loss")


@runtime_checkable
class Task(Protocol):
    name: str
    # metric -> "max" (bigger is better) or "min"; best-model selection and early stopping read it.
    # An optional ``default_metric`` names what --metric auto monitors (else "loss").
    directions: dict[str, str]

    def build_model(self, backbone: nn.Module, *, pooling: str) -> nn.Module:
        """The backbone with this task's head on top."""
        ...

    def split(self, batch: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], Any]:
        """A collated batch -> (the model's keyword inputs, the targets; None when unlabelled)."""
        ...

    def loss(self, outputs: torch.Tensor, targets: Any) -> torch.Tensor:
        """The mean training loss of one batch."""
        ...

    def keep(self, outputs: torch.Tensor, targets: Any) -> dict[str, torch.Tensor]:
        """What evaluation keeps of one batch (small, on the CPU)."""
        ...

    def metrics(self, kept: list[dict[str, torch.Tensor]]) -> dict[str, Any]:
        """The metrics over every batch evaluation kept; ``loss`` is always among them."""
        ...

    def predict(self, outputs: torch.Tensor) -> dict[str, Any]:
        """What a user gets for unlabelled inputs."""
        ...
