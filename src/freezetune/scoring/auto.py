"""The ``auto`` strategy: choose where to fine-tune on the user's own data, and say why.

What it optimises, by default: the cheapest plan whose expected task metric is within the noise of
the best plan's (:mod:`freezetune.scoring.cheapest`; ``objective=metric``: the best expected metric,
whatever it costs). ``budget=`` caps the trained share (cost);
``retention=R`` keeps at least the share R of the base model's pretrained skill (STS-B
after/before for encoders, perplexity before/after for decoders). Two methods choose:

- ``method=score`` (the default, the cheapest): one forward (or gradient) pass per sample batch
  scores every block, and the best contiguous suffix under the budget trains
  (:mod:`freezetune.scoring.select`). A gradient scorer also measures each block's gradient
  noise scale: a block whose gradient the training rows cannot resolve (rows < noise scale) is
  not a candidate, and when none is, LoRA adapts every block instead;
- ``method=race``: the candidate depths train briefly and the best by validation survives
  (successive halving on the shared frozen-prefix cache, :mod:`freezetune.scoring.race`).

A retention floor rides on the chosen plan: the run measures the skill kept at every evaluation
and keeps the best evaluation that keeps it (:mod:`freezetune.scoring.retention_guard`).

It registers itself in the strategy registry. Like every measuring strategy it receives a
:class:`ResolveContext` from whoever runs training: the model, the task and the labelled sample,
and it leaves the scores and the reason for its choice in ``context.selections``.
"""

from __future__ import annotations

from dataclasses import replace

from freezetune.core.causal_lm import CausalLM
from freezetune.core.errors import FreezetuneError
from freezetune.core.layout import LayerMap
from freezetune.core.plan import LoraSpec, Plan
from freezetune.scoring.cheapest import choose, explain_choice
from freezetune.scoring.cheapest import chosen_plan as cheapest_plan
from freezetune.scoring.race import chosen_plan, explain_race, race_plan, race_record
from freezetune.scoring.sample import DEFAULT_SAMPLES
from freezetune.scoring.scorers import SCORERS, TENSOR_SCORERS, score
from freezetune.scoring.select import (
    check_budget,
    compact,
    data_support,
    explain,
    explain_tensors,
    select_blocks,
    select_tensors,
)
from freezetune.strategies.registry import ResolveContext, register, resolve
from freezetune.tasks.causal_lm import CausalLanguageModeling
from freezetune.tasks.classification import SequenceClassification

GRANULARITIES = ("block", "tensor")


METHODS = ("score", "race")
# cheapest: the cheapest plan within noise of the best (the default); metric: the best expected metric.
OBJECTIVES = ("cheapest", "metric")
# When the training data supports no block (scoring/select.data_support): LoRA of this rank on every block.
FALLBACK_LORA_RANK = 8
# The method and scorer that did best on bench/protocol.yaml (bench/results/regret.md; docs/scoring.md).
DEFAULT_METHOD = "score"


def check_auto(layers: LayerMap, *, scorer: str = "gradient", method: str = "", budget: float | None = None,
               retention: float | None = None, granularity: str = "block", threshold: float | None = None,
               lora: int | None = None, **_) -> None:
    """The checks of ``auto``'s options that need no data and no weights (run before the model loads)."""
    method = method or DEFAULT_METHOD
    if method not in METHODS:
        raise FreezetuneError(f"unknown auto method {method!r}; choose score or race")
    if retention is not None and not 0 < retention <= 1:
        raise FreezetuneError(f"retention is the share of pretrained skill to keep, in (0, 1]; got {retention}")
    if lora is not None and (lora < 1 or granularity != "block"):
        raise FreezetuneError(f"auto:lora=R puts rank-R adapters on chosen blocks: R >= 1 and block granularity "
                              f"(got lora={lora}, granularity={granularity})")
    if granularity == "block" and threshold is not None and method == "score":
        raise FreezetuneError("a score threshold selects tensors: add granularity=tensor, or give a budget")
    if granularity == "tensor" and scorer not in TENSOR_SCORERS:
        raise FreezetuneError(
            f"scorer {scorer!r} scores blocks only; tensor granularity needs one of {', '.join(TENSOR_SCORERS)}"
        )
    if budget is not None and granularity == "block":
        check_budget(layers, budget)


@register(
    "auto",
    primary="scorer",
    needs_context=True,
    choices={"scorer": tuple(SCORERS), "method": METHODS, "granularity": GRANULARITIES, "objective": OBJECTIVES},
    check=check_auto,
    help={
        "scorer": "method=score: gradient (default), fisher, snr, semantic, variability (see docs/scoring.md)",
        "method": "score (forward scoring, the cheapest; default) or race (train the candidate depths briefly, keep "
                  "the best by successive halving)",
        "objective": "cheapest (default): the cheapest frozen-prefix depth whose predicted metric is within the "
                     "validation data's noise of the best; metric: the best predicted metric, whatever it costs",
        "budget": "cap on what trains (cost): below 1, share of the model's parameters; 1 or more, number of blocks "
                  "(granularity=tensor: number of tensors); default: no cap",
        "retention": "keep at least this share (0..1) of the base model's pretrained skill: measured at every "
                     "evaluation, the best evaluation that keeps it is kept (needs --retention sts, ppl or cka)",
        "share": "method=race: the race's cost as a share of one full run (default 0.25)",
        "eta": "method=race: 1/eta of the candidates survive each rung (default 3)",
        "rates": "method=race: factors of each depth's default rate to race, joined by + (default 1)",
        "contiguous": "train a contiguous top suffix (its frozen prefix can be cached) instead of the top blocks",
        "granularity": "block, or tensor: pick individual weight tensors (needs gradient, snr or fisher)",
        "threshold": "granularity=tensor: every block tensor scoring at least this (0..1) instead of a budget",
        "lora": "put LoRA adapters of this rank on the chosen blocks instead of training them (LoRA on a "
                "scorer's blocks), e.g. auto:lora=8; also the rank of the LoRA that adapts every block when the "
                "training data supports none (default 8)",
    },
)
def auto(layers: LayerMap, context: ResolveContext, scorer: str = "gradient", method: str = "",
         budget: float | None = None, retention: float | None = None, share: float = 0.25, eta: int = 3,
         rates: str = "1", contiguous: bool = True, granularity: str = "block",
         threshold: float | None = None, lora: int | None = None, objective: str = "cheapest") -> Plan:
    """Choose where to fine-tune: the cheapest plan within noise of the best (or, ``objective=metric``, the
    best), under an optional cost cap and retention floor."""
    check_auto(layers, scorer=scorer, method=method, budget=budget, retention=retention, granularity=granularity,
               threshold=threshold, lora=lora)
    if retention is not None and context.retention is None:
        raise FreezetuneError("auto:retention=R measures the pretrained skill at every evaluation: run with "
                              "--retention sts, ppl or cka (Python: Finetuner(..., retention=measure))")
    if (method or DEFAULT_METHOD) == "race":
        plan = _race(layers, context, budget=budget, share=share, eta=eta, rates=_factors(rates))
    else:
        if granularity == "tensor" and budget is None and threshold is None:
            budget = 0.25  # a tensor selection needs a bound; a quarter of the model is the documented default
        capped = budget is not None
        if granularity == "block" and budget is None:
            budget = layers.num_blocks  # no cap: any suffix may train
        plan = auto_plan(layers, context, scorer=scorer, budget=budget, contiguous=contiguous,
                         granularity=granularity, threshold=threshold, lora_rank=lora or FALLBACK_LORA_RANK,
                         objective=objective, capped=capped)
    if lora is not None and plan.lora is None:  # (a LoRA fallback already has the rank asked for)
        adapted = lora_plan(plan, lora, layers)
        if adapted is not plan:
            context.selections[-1]["explanation"] += f"\nLoRA r={lora} on the chosen blocks instead: {adapted.spec}."
        plan = adapted
    if retention is not None:
        plan = replace(plan, retention_floor=retention)
        context.selections[-1]["explanation"] += (
            f"\nRetention floor {retention:.0%}: the run measures the pretrained skill kept at every evaluation, keeps "
            "the best evaluation that keeps the floor and stops at the first that breaks it; if it broke, the run "
            "trains again one block deeper and keeps the better attempt.")
    return plan


def lora_plan(plan: Plan, rank: int, layers: LayerMap) -> Plan:
    """Rank-``rank`` LoRA adapters on ``plan``'s blocks, their base weights frozen (the head still trains)."""
    blocks = tuple(plan.trainable_blocks(layers.num_blocks))
    if not blocks:  # no block chosen (head only): nothing to adapt
        return plan
    return Plan(lora=LoraSpec(r=rank, blocks=blocks), head=plan.head, lr_multipliers=plan.lr_multipliers,
                spec=f"lora:r={rank}:blocks={compact(blocks)}")


def _factors(text: str | float) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in str(text).split("+") if part.strip())
    except ValueError:
        raise FreezetuneError(f"rates are factors of the default rate joined by +, like 1+3; got {text!r}") from None


def _race(layers: LayerMap, context: ResolveContext, **options) -> Plan:
    if options["budget"] is not None:
        check_budget(layers, options["budget"])
    model = scored_model(layers, context, "auto:method=race")
    result = race_plan(layers, replace(context, model=model), **options)
    context.selections.append({"explanation": explain_race(result), "seconds": result.seconds,
                               "race": race_record(result)})
    return chosen_plan(result, layers)


def scored_model(layers: LayerMap, context: ResolveContext, strategy: str):
    """The model a measuring strategy scores: the scorers read a sequence classifier's head or a causal LM's."""
    if context.task is not None and not isinstance(context.task, (SequenceClassification, CausalLanguageModeling)):
        raise FreezetuneError(f"{strategy} scores sequence classifiers and causal LMs; the {context.task.name} task "
                              "has no scorer yet")
    model = context.model if context.model is not None else layers.model
    if not hasattr(model, "classifier") and not isinstance(model, CausalLM):
        raise FreezetuneError(f"{strategy} scores a sequence classifier or a causal LM (freezetune's "
                              "SequenceClassifier or CausalLM)")
    return model


def auto_plan(layers: LayerMap, context: ResolveContext, *, scorer: str = "semantic", budget: float = 0.25,
              contiguous: bool = True, granularity: str = "block", threshold: float | None = None,
              max_samples: int = DEFAULT_SAMPLES, lora_rank: int = FALLBACK_LORA_RANK, objective: str = "metric",
              capped: bool = True) -> Plan:
    """Score ``context.model`` on ``context``'s sample; select blocks or tensors.

    Block granularity: ``objective="cheapest"`` (contiguous suffixes) takes the cheapest frozen-prefix
    depth within the validation noise of the best predicted metric (:mod:`freezetune.scoring.cheapest`;
    ``capped``: only depths within ``budget``); ``objective="metric"`` the best suffix under ``budget``
    (see :func:`select_blocks`). A gradient scorer also measures which blocks the training data
    supports (:func:`data_support`), and when it supports none, rank-``lora_rank`` LoRA adapts every
    block instead.
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
    result = score(model, context.batches("auto"), scorer, layers=layers, task=context.task, max_samples=max_samples)
    if granularity == "tensor":
        limit = None if threshold is not None else budget
        plan = select_tensors(model, layers, result, budget=limit, threshold=threshold)
        why = explain_tensors(model, layers, result, budget=limit, threshold=threshold)
    else:
        rows = len(context.train) if context.train is not None else None
        support = data_support(result, rows)
        # the objective's loss scale is calibrated on the gradient scorer's relative gradient and noise floor
        cheapest = objective == "cheapest" and contiguous and scorer in TENSOR_SCORERS
        if cheapest and (support is None or any(s >= 1 for s in support)):
            choice = choose(result, layers, support=support, validation_rows=_validation_rows(context, result),
                            metric=_metric(context), budget=budget if capped else None)
            plan = cheapest_plan(choice, layers)
            why = explain_choice(choice, result, layers, support=support, rows=rows,
                                 budget=budget if capped else None)
            unsupported = False  # head only (depth L) is a candidate like any other
        else:
            plan = select_blocks(result, layers, budget=budget, contiguous=contiguous, support=support)
            why = explain(result, layers, budget=budget, contiguous=contiguous, support=support, rows=rows)
            unsupported = not plan.blocks
            if objective == "cheapest" and scorer not in TENSOR_SCORERS:
                why += (f"\nObjective: the best predicted metric (the cheapest-within-noise objective predicts "
                        f"losses from a gradient scorer's signal and noise floor; {scorer} has neither).")
        if unsupported:
            plan = resolve(f"lora:r={lora_rank}", layers)
            why += (f"\nSo LoRA r={lora_rank} adapts every block instead ({plan.spec}): far fewer weights train, "
                    "the measured remedy for little data (SST-2, 100 rows: LoRA 0.745, full fine-tuning 0.685).")
    # The run logs the explanation and writes selection.txt and scores.json.
    context.selections.append({"scores": result, "explanation": why, "seconds": result.seconds})
    return plan


def _validation_rows(context: ResolveContext, result) -> int:
    """The rows the user's validation set has (the scoring sample's when there is none): the noise's n."""
    return len(context.validation) if context.validation is not None else result.samples


def _metric(context: ResolveContext) -> str | None:
    """The run's selection metric (``auto`` or none: the task's default, read as a share like accuracy)."""
    metric = getattr(context.config, "metric", None)
    return None if metric in (None, "auto") else metric
