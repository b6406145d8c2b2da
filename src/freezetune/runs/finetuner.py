"""``freezetune.Finetuner``: the training Finetuner, with every strategy resolved before it starts.

Measuring strategies (``auto``, ``auto_rgn``) score the model on labelled data, so they need a
``sample``: a tokenized training set (a seeded 256-row sample of it is scored) or ready batches.
``auto:method=race`` trains candidates, so it needs the tokenized training set as ``sample`` and
the validation set as ``validation``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import fields, replace
from typing import Any

from torch import nn

from freezetune.core.config import TrainConfig
from freezetune.core.plan import Plan
from freezetune.scoring.resolve import resolve_strategy
from freezetune.scoring.sample import sample_batches
from freezetune.strategies.schedules import Schedule
from freezetune.tasks.task import Task
from freezetune.training.callbacks import Callback
from freezetune.training.finetuner import Finetuner as _TrainingFinetuner


class Finetuner(_TrainingFinetuner):
    """``Finetuner(model, "auto", sample=train).fit(train, val)``; any strategy, Plan or Schedule.

    ``selections`` holds what a measuring strategy scored and why it chose its plan. ``retention``
    (a model -> share of the pretrained skill it keeps) is what ``auto:retention=R`` checks.
    """

    def __init__(self, model: nn.Module, strategy: str | Plan | Schedule = "full", *,
                 freeze_pattern: str | Plan | None = None, sample: Any = None, validation: Any = None,
                 task: Task | None = None, callbacks: Iterable[Callback] = (), pad_token_id: int = 0,
                 retention: Callable[[nn.Module], float] | None = None, **kwargs: Any):
        strategy = freeze_pattern if freeze_pattern is not None else strategy
        names = {f.name for f in fields(TrainConfig)}
        config = replace(kwargs.get("config") or TrainConfig(), **{k: v for k, v in kwargs.items() if k in names})
        resolution = resolve_strategy(
            strategy, model, task=task, sample=_batches(sample, pad_token_id), pad_token_id=pad_token_id,
            train=sample if hasattr(sample, "column_names") else None, validation=validation, config=config,
            retention=retention)
        self.selections = resolution.selections
        super().__init__(model, resolution.strategy, task=task, callbacks=[*resolution.callbacks, *callbacks],
                         pad_token_id=pad_token_id, **kwargs)


def _batches(sample: Any, pad_token_id: int) -> Sequence[dict] | None:
    """A tokenized dataset becomes a seeded sample of padded batches; batches pass through."""
    if sample is not None and hasattr(sample, "column_names"):
        return sample_batches(sample, pad_token_id=pad_token_id)
    return sample
