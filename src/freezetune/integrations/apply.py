"""``freezetune.apply(model, spec)``: freeze a model where a plan says, for any training loop.

It resolves the spec (measuring ones score ``sample`` first), adds LoRA adapters in place when
the plan has them, sets ``requires_grad`` on every parameter, logs the table of what trains and
returns the :class:`Plan`. A schedule changes its plan while training, which one call cannot do:
it is refused, pointing to the Trainer callback.
"""

from __future__ import annotations

import logging
from typing import Any

from torch import nn

from freezetune.core.errors import FreezetuneError
from freezetune.core.layout import LayerMap
from freezetune.core.lora import add_lora
from freezetune.core.plan import Plan
from freezetune.integrations.resolution import explained, is_schedule_spec, resolve_on
from freezetune.scoring.sample import DEFAULT_SAMPLES
from freezetune.tasks.task import Task

log = logging.getLogger("freezetune")


def apply(model: nn.Module, spec: str | Plan, *, sample: Any = None, task: Task | None = None,
          samples: int = DEFAULT_SAMPLES, seed: int = 0, batch_size: int = 16, pad_token_id: int = 0) -> Plan:
    """Freeze ``model`` where ``spec`` says; return the plan.

    ``spec`` is any plan spec (``top_k:2``, ``layers:0,3,10-12``, ``lora:r=8:blocks=4,5``, ``auto``...)
    or a :class:`Plan`. Measuring specs score ``sample``: labelled batches, or a tokenized dataset of
    which a seeded ``samples`` rows are drawn (a causal LM's rows without ``labels`` learn every token).
    """
    if is_schedule_spec(spec):
        name = spec.split(":", 1)[0] if isinstance(spec, str) else type(spec).__name__
        raise FreezetuneError(f"{name} is a schedule (its plan changes while training), which one apply() cannot "
                              f"set: use freezetune.FreezetuneCallback({name!r}) with transformers.Trainer")
    plan, selections = resolve_on(model, spec, sample=sample, task=task, samples=samples, seed=seed,
                                  batch_size=batch_size, pad_token_id=pad_token_id)
    layers = LayerMap.from_model(model)
    if plan.lora is not None:
        model, layers = add_lora(model, plan.lora, layers)  # in place: the caller's model gains the adapters
    plan.apply(model, layers)
    if selections:
        log.info("%s", explained(selections))
    log.info("%s", plan.describe(layers))
    return plan
