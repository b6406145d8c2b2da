"""Sequence classification: a pooled backbone, a linear head, cross-entropy, accuracy / F1 / MCC."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from freezetune.core.config import CLASSIFICATION
from freezetune.core.errors import FreezetuneError
from freezetune.core.model import SequenceClassifier
from freezetune.measure.metrics import METRIC_DIRECTIONS, classification_metrics


@dataclass
class SequenceClassification:
    """Labels are class ids 0..C-1 in the batch's ``labels``; ``label_names`` name them."""

    label_names: list[str] | None = None
    name: str = CLASSIFICATION
    directions: dict[str, str] = field(default_factory=lambda: dict(METRIC_DIRECTIONS))
    default_metric: str = "accuracy"
    summary_metrics: tuple[str, ...] = ("accuracy", "macro_f1", "mcc")  # the headline first

    def build_model(self, backbone: nn.Module, *, pooling: str) -> nn.Module:
        if not self.label_names:
            raise FreezetuneError("a classification head needs the label names")
        return SequenceClassifier(backbone, len(self.label_names), pooling)

    def split(self, batch: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], Any]:
        inputs = dict(batch)
        return inputs, inputs.pop("labels", None)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(outputs.float(), targets)

    def keep(self, outputs: torch.Tensor, targets: torch.Tensor | None) -> dict[str, torch.Tensor]:
        kept = {"logits": outputs.float().cpu()}
        if targets is not None:
            kept["labels"] = targets.cpu()
        return kept

    def metrics(self, kept: list[dict[str, torch.Tensor]]) -> dict[str, Any]:
        if not kept or "labels" not in kept[0]:
            raise FreezetuneError("evaluation data has no labels")
        logits = torch.cat([k["logits"] for k in kept])
        labels = torch.cat([k["labels"] for k in kept])
        names = self.label_names or [str(i) for i in range(logits.size(-1))]
        metrics = classification_metrics(labels.tolist(), logits.argmax(-1).tolist(), names)
        metrics["loss"] = nn.functional.cross_entropy(logits, labels).item()
        return metrics

    def baseline(self, train_labels: list[int], reported_labels: list[int]) -> dict[str, Any]:
        """The metrics of always predicting the training data's most frequent class: what learning nothing scores."""
        majority = max(set(train_labels), key=train_labels.count)
        names = self.label_names or [str(i) for i in range(max(train_labels + reported_labels) + 1)]
        scores = classification_metrics(reported_labels, [majority] * len(reported_labels), names)
        return {k: v for k, v in scores.items() if k != "per_class"}

    def predict(self, outputs: torch.Tensor) -> dict[str, Any]:
        probabilities = outputs.float().softmax(-1)
        names = self.label_names or [str(i) for i in range(outputs.size(-1))]
        return {"label": [names[i] for i in probabilities.argmax(-1).tolist()], "probabilities": probabilities}
