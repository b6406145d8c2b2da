"""Tasks: what a kind of fine-tuning owns (batch contents, head, loss, metrics, predictions)."""

from freezetune.tasks.classification import SequenceClassification
from freezetune.tasks.task import Task

__all__ = ["SequenceClassification", "Task"]
