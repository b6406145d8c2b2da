"""What scoring costs, next to what it saves: one full fine-tuning run estimated from timed steps."""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from freezetune.core.device import device_of
from freezetune.scoring.probes import split_batch, task_for, untouched
from freezetune.scoring.sample import take
from freezetune.tasks.task import Task


# ---------------------------------------------------------------------- what scoring costs
def full_step_seconds(model, batches, *, steps: int = 3, task: Task | None = None) -> float:
    """Seconds of one full fine-tuning forward + backward of the task's loss (dropout on, every
    tensor trained) on a batch of ``batches``: the median of ``steps`` after one warm-up. The
    optimizer step is left out, so a run estimated from it is a lower bound. The model is left
    untouched."""
    task = task_for(model, task, "the cost estimate")
    device = device_of(model)
    params = list(model.parameters())
    pool = list(take(batches, None))
    times = []
    with untouched(model, trainable=True):
        model.train()
        for index in range(steps + 1):
            batch = pool[index % len(pool)]
            start = time.perf_counter()
            inputs, targets, _ = split_batch(task, batch, device)
            loss = task.loss(model(**inputs), targets)
            torch.autograd.grad(loss, params, allow_unused=True)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if index:
                times.append(time.perf_counter() - start)
    return float(np.median(times))


def run_estimate(model, batches, *, rows: int, batch_size: int, epochs: int,
                 task: Task | None = None) -> dict[str, float]:
    """A full fine-tuning run of ``rows`` training rows, estimated from timed steps."""
    step_s = full_step_seconds(model, batches, task=task)
    steps = math.ceil(rows / batch_size) * epochs
    return {"step_s": step_s, "steps": steps, "epochs": epochs, "batch_size": batch_size, "run_s": step_s * steps}
