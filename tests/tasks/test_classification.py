"""Sequence classification as a Task: its head, loss, metrics and predictions."""

import pytest
import torch

from conftest import tiny_bert
from freezetune import FreezetuneError, SequenceClassification, Task


def test_classification_is_a_task_too():
    task = SequenceClassification(["a", "b", "c"])
    assert isinstance(task, Task)
    model = task.build_model(tiny_bert(), pooling="mean")
    assert model.classifier.out_features == 3
    out = task.predict(torch.tensor([[0.0, 2.0, 1.0]]))
    assert out["label"] == ["b"] and out["probabilities"].sum().item() == pytest.approx(1.0)


def test_classification_metrics_and_loss_from_what_evaluation_kept():
    task = SequenceClassification(["neg", "pos"])
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]])
    labels = torch.tensor([0, 1, 1])
    inputs, targets = task.split({"input_ids": torch.ones(3, 2), "labels": labels})
    assert "labels" not in inputs and torch.equal(targets, labels)
    metrics = task.metrics([task.keep(logits[:2], labels[:2]), task.keep(logits[2:], labels[2:])])
    assert metrics["accuracy"] == pytest.approx(2 / 3) and metrics["n"] == 3
    assert metrics["loss"] == pytest.approx(torch.nn.functional.cross_entropy(logits, labels).item())
    assert task.loss(logits, labels).item() == pytest.approx(metrics["loss"])
    with pytest.raises(FreezetuneError, match="no labels"):
        task.metrics([task.keep(logits, None)])
