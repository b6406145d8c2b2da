"""The ``auto`` strategy: score every block (or tensor) on the run's sample, train the best under a budget.

It registers itself in the strategy registry. Like every measuring strategy it receives a
:class:`ResolveContext` from whoever runs training: the model, the task and the labelled sample,
and it leaves the scores and the reason for its choice in ``context.selections``.
"""

from __future__ import annotations

from freezetune.core.errors import FreezetuneError
from freezetune.core.layout import LayerMap
from freezetune.core.plan import Plan
from freezetune.scoring.sample import DEFAULT_SAMPLES
from freezetune.scoring.scorers import TENSOR_SCORERS, score
from freezetune.scoring.select import check_budget, explain, explain_tensors, select_blocks, select_tensors
from freezetune.strategies.registry import ResolveContext, register
from freezetune.tasks.classification import SequenceClassification

GRANULARITIES = ("block", "tensor")


@register(
    "auto",
    primary="scorer",
    needs_context=True,
    help={
        "scorer": "scorer: semantic, variability, gradient, snr, fisher (see docs/scoring.md)",
        "budget": "below 1: share of the model's parameters that may train; 1 or more: number of blocks "
                  "(granularity=tensor: number of tensors)",
        "contiguous": "train a contiguous top suffix (its frozen prefix can be cached) instead of the top blocks",
        "granularity": "block, or tensor: pick individual weight tensors (needs gradient, snr or fisher)",
        "threshold": "granularity=tensor: every block tensor scoring at least this (0..1) instead of a budget",
    },
)
def auto(layers: LayerMap, context: ResolveContext, scorer: str = "semantic", budget: float = 0.25,
         contiguous: bool = True, granularity: str = "block", threshold: float = 0.0) -> Plan:
    """Score each block (or tensor) on a sample of the training data and train the best under a budget."""
    return auto_plan(layers, context, scorer=scorer, budget=budget, contiguous=contiguous, granularity=granularity,
                     threshold=threshold or None)


def scored_model(layers: LayerMap, context: ResolveContext, strategy: str):
    """The model a measuring strategy scores: today's scorers read a sequence classifier's head."""
    if context.task is not None and not isinstance(context.task, SequenceClassification):
        raise FreezetuneError(f"{strategy} scores sequence classifiers; the {context.task.name} task has no scorer yet")
    model = context.model if context.model is not None else layers.model
    if not hasattr(model, "classifier"):
        raise FreezetuneError(f"{strategy} scores a sequence classifier (freezetune's SequenceClassifier)")
    return model


def auto_plan(layers: LayerMap, context: ResolveContext, *, scorer: str = "semantic", budget: float = 0.25,
              contiguous: bool = True, granularity: str = "block", threshold: float | None = None,
              max_samples: int = DEFAULT_SAMPLES) -> Plan:
    """Score ``context.model`` on ``context``'s sample; select blocks or tensors.

    Block granularity: the blocks worth training under ``budget`` (see :func:`select_blocks`).
    Tensor granularity: the block tensors with the best per-tensor scores under ``budget`` (a
    count, or a parameter share), or every one scoring >= ``threshold`` when it is given.
    """
    if granularity not in GRANULARITIES:
        raise FreezetuneError(f"unknown granularity {granularity!r}; choose block or tensor")
    if granularity == "block":
        if threshold is not None:
            raise FreezetuneError("a score threshold selects tensors: add granularity=tensor, or give a budget")
        check_budget(layers, budget)  # a bad budget fails before any scoring
    elif scorer not in TENSOR_SCORERS:
        raise FreezetuneError(
            f"scorer {scorer!r} scores blocks only; tensor granularity needs one of {', '.join(TENSOR_SCORERS)}"
        )
    model = scored_model(layers, context, "auto")
    result = score(model, context.batches("auto"), scorer, layers=layers, max_samples=max_samples)
    if granularity == "tensor":
        limit = None if threshold is not None else budget
        plan = select_tensors(model, layers, result, budget=limit, threshold=threshold)
        why = explain_tensors(model, layers, result, budget=limit, threshold=threshold)
    else:
        plan = select_blocks(result, layers, budget=budget, contiguous=contiguous)
        why = explain(result, layers, budget=budget, contiguous=contiguous)
    context.selections.append({"scores": result, "explanation": why})  # the run logs it, writes selection.txt
    return plan
