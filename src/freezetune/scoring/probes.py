"""What every scorer shares: the task it scores for, leaving the model untouched, pooled boundary
states, normalising."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable

import torch
from torch import nn

from freezetune.core.causal_lm import CausalLM
from freezetune.core.device import device_of, model_inputs
from freezetune.core.errors import FreezetuneError
from freezetune.core.layout import LayerMap
from freezetune.core.model import pool_hidden
from freezetune.scoring.result import LayerScores
from freezetune.scoring.sample import take
from freezetune.tasks.causal_lm import IGNORE, CausalLanguageModeling
from freezetune.tasks.classification import SequenceClassification
from freezetune.tasks.task import Task


# ---------------------------------------------------------------------- the task scored for
def task_for(model: nn.Module, task: Task | None, scorer: str) -> Task:
    """The task whose loss and targets a scorer reads: the one given, else the model's own (a
    ``CausalLM`` is a causal language model, anything else a sequence classifier).

    A task that cannot read the model's outputs is refused here, in one line, rather than deep
    inside a loss: a causal LM's logits are per token, a classifier's per example.
    """
    if task is None:
        return CausalLanguageModeling() if isinstance(model, CausalLM) else SequenceClassification()
    if is_causal(task) and not isinstance(model, CausalLM):
        raise FreezetuneError(f"{scorer} with the {task.name} task needs a causal LM (freezetune's CausalLM), "
                              f"got {type(model).__name__}")
    if isinstance(task, SequenceClassification) and isinstance(model, CausalLM):
        raise FreezetuneError(f"{scorer}: this model is a causal LM with no classification head; score it with "
                              "the causal LM task (CausalLanguageModeling)")
    return task


def is_causal(task: Task) -> bool:
    return isinstance(task, CausalLanguageModeling)


def split_batch(task: Task, batch: dict, device: torch.device) -> tuple[dict[str, torch.Tensor], torch.Tensor, int]:
    """(the model's inputs, the targets, how many terms the task's mean loss averages over).

    The terms are the rows of a classification batch and the target tokens (shifted label !=
    -100) of a causal LM batch: the unit whose per-term gradient ``fisher`` estimates.
    """
    inputs, targets = task.split(batch)
    targets = torch.as_tensor(targets)
    targets = (targets if targets.is_floating_point() else targets.long()).to(device)
    at = inputs.get("logits_at")
    inputs = model_inputs(inputs, device)
    if at is not None:  # a causal LM projects onto the vocabulary at target positions only, as in training
        inputs["logits_at"] = at.to(device)
    if not is_causal(task):
        return inputs, targets, len(targets)
    if targets.shape != inputs["input_ids"].shape:
        shape = tuple(inputs["input_ids"].shape)
        raise FreezetuneError(f"causal LM labels must be one per token, shaped like input_ids {shape}; "
                              f"got {tuple(targets.shape)}")
    return inputs, targets, int((targets[:, 1:] != IGNORE).sum())


def no_targets(scorer: str) -> FreezetuneError:
    return FreezetuneError(f"{scorer}: the scoring sample has no target token (every shifted label is -100): "
                           "give examples with a response")


@contextlib.contextmanager
def untouched(model: nn.Module, *, trainable: bool):
    """Eval mode (and optionally every parameter trainable) inside; everything restored after."""
    modes = [(m, m.training) for m in model.modules()]
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    grads = [p.grad for p in params]
    try:
        model.eval()
        if trainable:
            for p in params:
                p.requires_grad_(True)
        yield
    finally:
        for module, mode in modes:
            module.training = mode
        for p, flag, grad in zip(params, flags, grads):
            p.requires_grad_(flag)
            p.grad = grad


def pooled_states(model, layers: LayerMap, batches, max_samples) -> tuple[list[torch.Tensor], torch.Tensor, int]:
    """Pooled hidden states at boundaries 0..L (float64, [N, H] each), the labels [N], the batch count.

    Boundary 0 is block 0's input (the embeddings' output); boundary l is block l-1's output.
    The model's own pooling is used (``cls`` reads position 0: no pooler exists between blocks).
    """
    blocks = layers.blocks
    captured: list[torch.Tensor] = []

    def before(module, args, kwargs):
        captured.append(args[0] if args else kwargs["hidden_states"])

    def after(module, args, output):
        captured.append(output[0] if isinstance(output, (tuple, list)) else output)

    pooling = getattr(model, "pooling", "mean")
    pooled: list[list[torch.Tensor]] = [[] for _ in range(len(blocks) + 1)]
    labels = []
    hooks = [blocks[0].register_forward_pre_hook(before, with_kwargs=True)]
    hooks += [block.register_forward_hook(after) for block in blocks]
    device = device_of(model)
    try:
        with torch.no_grad():
            for batch in take(batches, max_samples):
                if torch.as_tensor(batch["labels"]).ndim != 1:
                    raise FreezetuneError("scoring a sequence classifier needs one class id per example as labels")
                inputs = model_inputs(batch, device)
                captured.clear()
                model(**inputs)
                mask = inputs["attention_mask"]
                for boundary, hidden in enumerate(captured[: len(blocks) + 1]):
                    pooled[boundary].append(pool_hidden(hidden, mask, pooling).double().cpu())
                labels.append(torch.as_tensor(batch["labels"]).long().cpu())
    finally:
        for hook in hooks:
            hook.remove()
    return [torch.cat(p) for p in pooled], torch.cat(labels), len(labels)


def standardise(x: torch.Tensor) -> torch.Tensor:
    """z-score every feature over the sample: no rogue dimension dominates distances."""
    return (x - x.mean(0)) / x.std(0, unbiased=False).clamp_min(1e-8)


def classes(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels as 0..C-1 and the counts per class; needs two classes or more."""
    classes, index, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    if len(classes) < 2:
        raise FreezetuneError(
            f"scoring needs examples of at least 2 classes in the sample, got only label {classes.tolist()}"
        )
    return index, counts


def normalise(values: list[float]) -> list[float]:
    top = max((abs(v) for v in values if math.isfinite(v)), default=0.0)
    if top == 0:
        return [0.0 for _ in values]
    return [v / top if math.isfinite(v) else math.copysign(1.0, v) for v in values]


def timed(name: str, fn: Callable[[], LayerScores]) -> LayerScores:
    start = time.perf_counter()
    result = fn()
    result.seconds = time.perf_counter() - start
    result.scorer = name
    return result
