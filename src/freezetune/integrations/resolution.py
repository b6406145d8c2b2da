"""Resolving a spec on the model a user already trains: a Hugging Face model or freezetune's own.

Static specs and schedules read only the layout. Measuring specs (``auto...``) score the model on
a labelled sample, and the scorers read freezetune's model shapes (a classifier returning logits,
a ``CausalLM``): a plain ``...ForCausalLM`` or ``...ForSequenceClassification`` is scored through
a thin view that shares its weights, and the plan, which names units and blocks, carries over;
tensor names the view prefixed (``backbone.``) lose that prefix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from torch import nn

from freezetune.core.causal_lm import CausalLM
from freezetune.core.errors import FreezetuneError
from freezetune.core.layout import LayerMap
from freezetune.core.model import SequenceClassifier
from freezetune.core.plan import Plan
from freezetune.core.spec import parse_spec
from freezetune.scoring.resolve import resolve_strategy
from freezetune.scoring.sample import DEFAULT_SAMPLES, sample_batches
from freezetune.strategies.registry import REGISTRY, needs_context, resolve
from freezetune.strategies.schedules import Schedule
from freezetune.tasks.causal_lm import CausalLanguageModeling
from freezetune.tasks.task import Task

VIEW_PREFIX = "backbone."
BATCH_KEYS = ("input_ids", "attention_mask", "token_type_ids", "labels")


class LogitsView(nn.Module):
    """A Hugging Face sequence classifier as the scorers read one: ``forward`` returns the logits."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.backbone = model
        self.config = model.config
        # not registered again: the head's tensors keep one name (the scorers only look for the attribute)
        object.__setattr__(self, "classifier", getattr(model, "classifier", None) or getattr(model, "score", None))

    def forward(self, input_ids, attention_mask, token_type_ids=None, **_):
        extra = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        return self.backbone(input_ids=input_ids, attention_mask=attention_mask, **extra).logits


def is_schedule_spec(spec: Any) -> bool:
    """Whether ``spec`` names a schedule (plans that change while training) rather than one plan."""
    if isinstance(spec, Schedule) and not isinstance(spec, Plan):
        return True
    if isinstance(spec, str):
        strategy = REGISTRY.get(parse_spec(spec).name)
        return strategy is not None and strategy.schedule
    return False


def scoring_view(model: nn.Module, task: Task | None) -> tuple[nn.Module, Task | None, str]:
    """The model the scorers read, the task they score and the prefix its names add to ``model``'s."""
    if isinstance(model, (SequenceClassifier, CausalLM)):
        return model, task, ""
    kind = type(model).__name__
    if kind.endswith("ForCausalLM") or kind.endswith("LMHeadModel"):
        return CausalLM(model), task or CausalLanguageModeling(), VIEW_PREFIX
    if kind.endswith("ForSequenceClassification"):
        return LogitsView(model), task, VIEW_PREFIX
    raise FreezetuneError(f"auto scores a sequence classifier or a causal LM; {kind} is neither: resolve a static "
                          "spec (top_k:2, layers:4-5, ...) or pass a Plan")


def as_batches(sample: Any, *, view: nn.Module, size: int = DEFAULT_SAMPLES, seed: int = 0, batch_size: int = 16,
               pad_token_id: int = 0) -> list[dict]:
    """Labelled padded batches from ``sample``: batches as they are, or a seeded sample of a tokenized dataset.

    A causal LM's dataset without ``labels`` learns every next token (labels = input_ids; padding is -100)."""
    if sample is None:
        raise FreezetuneError("auto scores the model on labelled data: pass sample= (batches, or a tokenized "
                              "dataset with labels)")
    if not hasattr(sample, "column_names"):
        return [{k: v for k, v in batch.items() if k in BATCH_KEYS} for batch in sample]
    if len(sample) == 0:
        raise FreezetuneError("the scoring sample is empty: the data set has no rows")
    if "labels" not in sample.column_names and isinstance(view, CausalLM):
        picked = np.sort(np.random.default_rng(seed).permutation(len(sample))[: min(size, len(sample))])
        sample = sample.select(picked.tolist())
        sample = sample.add_column("labels", sample["input_ids"])
    keep = [c for c in sample.column_names if c in BATCH_KEYS]
    return sample_batches(sample.select_columns(keep), size=size, seed=seed, batch_size=batch_size,
                          pad_token_id=pad_token_id)


def resolve_on(model: nn.Module, spec: str | Plan | Schedule, *, sample: Any = None, task: Task | None = None,
               samples: int = DEFAULT_SAMPLES, seed: int = 0, batch_size: int = 16,
               pad_token_id: int = 0) -> tuple[Plan | Schedule, list[dict]]:
    """``spec`` resolved for ``model``, and what any scoring measured (``{"explanation", "scores"...}``)."""
    if isinstance(spec, Schedule) and not isinstance(spec, Plan):
        return spec, []
    layers = LayerMap.from_model(model)
    if not needs_context(spec):
        return resolve(spec, layers), []
    view, view_task, prefix = scoring_view(model, task)
    batches = as_batches(sample, view=view, size=samples, seed=seed, batch_size=batch_size,
                         pad_token_id=pad_token_id)
    resolution = resolve_strategy(spec, view, task=view_task, sample=batches)
    plan = resolution.strategy
    if resolution.callbacks:  # Auto-RGN's per-epoch rates, a retention floor's guard: freezetune's loop runs them
        raise FreezetuneError(f"{spec} needs freezetune's own training loop while it trains "
                              f"({', '.join(type(c).__name__ for c in resolution.callbacks)}): train with "
                              "freezetune.Finetuner, or drop the option that needs it")
    return _unprefixed(plan, prefix).validate(layers), resolution.selections


def _unprefixed(plan: Plan, prefix: str) -> Plan:
    if not prefix:
        return plan
    def strip(name):
        return (name[len(prefix):] if name.startswith(prefix) else name)
    return replace(plan, tensors=tuple(strip(n) for n in plan.tensors),
                   tensor_lr_multipliers=tuple((strip(n), m) for n, m in plan.tensor_lr_multipliers))


def explained(selections: Sequence[dict]) -> str:
    """What the scoring chose and why, as the run's selection.txt says it."""
    return "\n".join(s["explanation"] for s in selections if s.get("explanation"))
