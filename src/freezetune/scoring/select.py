"""``auto``: per-block scores plus a budget become a Plan, with a text saying why.

* :func:`select_blocks` — block granularity. The budget is a block count (``budget >= 1``) or a
  fraction of the model's parameters that the trainable *blocks* may hold (``budget < 1``; the
  head always trains, the embeddings stay frozen, neither is counted). ``contiguous=True``
  picks the best *suffix* d..L-1 (the prefix stays frozen, so it is cached); otherwise the
  top-scoring blocks. The budget is a ceiling: a block whose score is <= 0 is never added just
  because it fits (signed scorers, ``semantic`` and ``variability``, can stop short of it).
* :func:`select_tensors` — tensor granularity: individual block weight tensors by a per-tensor
  score (gradient, snr, fisher), the best under a count or parameter-share budget, or all above
  a threshold; the plan's ``tensors`` field names them.
* :func:`auto_plan`, :func:`scoring_sample`, :func:`context_sample` — what the scoring
  strategies (``auto``, ``auto_rgn``) need: the model is ``layers.model``; the labelled sample
  comes from the run (a context variable), because a strategy function only receives the LayerMap.
"""

from __future__ import annotations

import contextlib
import math
import numbers
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from freezetune.core.errors import FreezetuneError
from freezetune.core.layout import LayerMap, block_unit
from freezetune.core.plan import Plan
from freezetune.scoring.scorers import DEFAULT_SAMPLES, TENSOR_SCORERS, LayerScores, score

# ---------------------------------------------------------------------- budgets
@dataclass(frozen=True)
class _Budget:
    text: str
    fits: Callable[[tuple[int, ...]], bool]


def _budget(layers: LayerMap, budget: float | int) -> _Budget:
    n = layers.num_blocks
    counts = layers.counts()
    sizes = [counts[block_unit(i)] for i in range(n)]
    if isinstance(budget, bool) or not isinstance(budget, numbers.Real) or not math.isfinite(budget):
        raise FreezetuneError(f"budget must be a number: a parameter fraction < 1 or a block count >= 1, got {budget!r}")
    if budget <= 0:
        raise FreezetuneError(f"budget must be positive (a parameter fraction < 1 or a block count >= 1), got {budget}")
    if budget < 1:
        total = layers.total()
        limit = budget * total
        smallest = min(sizes)
        if limit < smallest:
            raise FreezetuneError(
                f"budget {budget:g} of {total:,} parameters ({int(limit):,}) is smaller than one block "
                f"({smallest:,} = {smallest / total:.1%} of the model); give at least {smallest / total:.3f}, "
                "or a block count >= 1"
            )
        return _Budget(
            f"{budget:g} of the model's {total:,} parameters = {int(limit):,} in blocks",
            lambda blocks: sum(sizes[b] for b in blocks) <= limit * (1 + 1e-12),
        )
    if budget != int(budget):
        raise FreezetuneError(f"a budget >= 1 is a block count and must be a whole number, got {budget}")
    k = int(budget)
    if k > n:
        raise FreezetuneError(f"budget of {k} blocks exceeds this model's {n} blocks (0..{n - 1})")
    return _Budget(f"at most {k} of {n} blocks", lambda blocks: len(blocks) <= k)


def _check_scores(scores: LayerScores, layers: LayerMap) -> list[float]:
    if len(scores.scores) != layers.num_blocks:
        raise FreezetuneError(
            f"{scores.scorer} scores cover {len(scores.scores)} blocks but the model has {layers.num_blocks}"
        )
    return list(scores.scores)


# ---------------------------------------------------------------------- block selection
def _choose(values: list[float], budget: _Budget, contiguous: bool) -> tuple[tuple[int, ...], list[tuple[int, float]]]:
    """Chosen blocks, and for the suffix mode every admissible (d, total score)."""
    n = len(values)
    if contiguous:
        options = []
        for d in range(n - 1, -1, -1):  # shortest suffix first: ties keep the cheaper one
            blocks = tuple(range(d, n))
            if not budget.fits(blocks):
                break
            options.append((d, sum(values[d:])))
        if not options:
            raise FreezetuneError("the budget cannot hold the top block, so no suffix fits; raise the budget")
        best_d = max(options, key=lambda o: o[1])[0]  # max keeps the first of equal totals
        return tuple(range(best_d, n)), options
    chosen: list[int] = []
    for b in sorted(range(n), key=lambda i: (-values[i], -i)):  # ties: the block nearer the output
        if chosen and values[b] <= 0:
            break
        if budget.fits(tuple(chosen + [b])):
            chosen.append(b)
    return tuple(sorted(chosen)), []


def select_blocks(scores: LayerScores, layers: LayerMap, *, budget: float | int, contiguous: bool = True) -> Plan:
    """The blocks worth training under ``budget`` (see the module doc); head trains, embeddings frozen.

    The plan's ``spec`` is the equivalent ``layers:...`` spec, so the choice can be re-run
    without scoring; :func:`explain` says why it was made.
    """
    values = _check_scores(scores, layers)
    blocks, _ = _choose(values, _budget(layers, budget), contiguous)
    return Plan(blocks=blocks, spec=f"layers:{_compact(blocks)}").validate(layers)


def explain(scores: LayerScores, layers: LayerMap, *, budget: float | int, contiguous: bool = True) -> str:
    """Why :func:`select_blocks` chose what it chose: scores, budget, alternatives, choice."""
    values = _check_scores(scores, layers)
    spent = _budget(layers, budget)
    blocks, options = _choose(values, spent, contiguous)
    counts = layers.counts()
    total = layers.total()
    mode = "best contiguous suffix (frozen prefix cached)" if contiguous else "top-scoring blocks"
    lines = [
        f"auto: scorer={scores.scorer} ({scores.samples} examples), budget {spent.text}, {mode}",
        f"{'block':>5} {'score':>7} {'parameters':>12}  chosen",
    ]
    for i, value in enumerate(values):
        lines.append(f"{i:>5} {value:>+7.3f} {counts[block_unit(i)]:>12,}  {'yes' if i in blocks else ''}")
    if contiguous:
        parts = [f"d={d}: {t:+.3f}" for d, t in options]
        lines.append("suffix d..L-1 within budget, total score: " + ", ".join(parts))
    trained = sum(counts[block_unit(i)] for i in blocks)
    lines.append(
        f"chosen: blocks {_compact(blocks)} ({len(blocks)} of {layers.num_blocks}; {trained:,} parameters = "
        f"{trained / total:.1%} of the model; frozen prefix depth {blocks[0]}); head trains, embeddings frozen"
    )
    if any(v <= 0 for v in values):
        lines.append("blocks scoring <= 0 are added only when they open the way to better ones (suffix) or never (top)")
    return "\n".join(lines)


def _compact(blocks: Iterable[int]) -> str:
    """(0, 1, 2, 5) -> "0-2,5" (the plan-spec block-list syntax)."""
    blocks = sorted(blocks)
    parts, start = [], None
    for i, b in enumerate(blocks):
        if start is None:
            start = b
        if i + 1 == len(blocks) or blocks[i + 1] != b + 1:
            parts.append(str(start) if start == b else f"{start}-{b}")
            start = None
    return ",".join(parts) or "none"


# ---------------------------------------------------------------------- tensor selection
def _tensor_values(scores: LayerScores | Mapping[str, float]) -> dict[str, float]:
    if isinstance(scores, LayerScores):
        if scores.tensor_scores is None:
            raise FreezetuneError(
                f"scorer {scores.scorer!r} has no per-tensor scores; tensor granularity needs gradient, snr or fisher"
            )
        return dict(scores.tensor_scores)
    return dict(scores)


def _choose_tensors(model, layers: LayerMap, values: dict[str, float], budget: float | int | None,
                    threshold: float | None) -> tuple[list[str], str]:
    """Chosen block tensors, best first, and the budget in words."""
    if (budget is None) == (threshold is None):
        raise FreezetuneError("tensor selection needs exactly one of a budget or a threshold")
    params = dict(model.named_parameters())
    unknown = [n for n in values if n not in params]
    if unknown:
        raise FreezetuneError(f"scores name a tensor the model does not have: {unknown[0]!r}")
    owner = layers.block_of_tensor()
    candidates = sorted((n for n in values if n in owner and math.isfinite(values[n]) and values[n] > 0),
                        key=lambda n: (-values[n], -owner[n], n))
    if threshold is not None:
        chosen = [n for n in candidates if values[n] >= threshold]
        if not chosen:
            best = f"; the best block tensor scores {values[candidates[0]]:.4g}" if candidates else ""
            raise FreezetuneError(f"no block tensor scores >= {threshold:g}{best}; lower the threshold")
        return chosen, f"score >= {threshold:g}"
    if isinstance(budget, bool) or not isinstance(budget, numbers.Real) or not budget > 0:
        raise FreezetuneError(f"budget must be a positive number (a parameter fraction < 1 or a tensor count), got {budget!r}")
    if budget >= 1:
        if budget != int(budget):
            raise FreezetuneError(f"a tensor budget >= 1 is a tensor count and must be a whole number, got {budget}")
        return candidates[: int(budget)], f"the {int(budget)} best tensors"
    total = layers.total()
    limit = budget * total
    chosen, spent = [], 0
    for name in candidates:  # greedy by score: a tensor that does not fit is skipped, smaller ones may
        size = params[name].numel()
        if spent + size <= limit:
            chosen.append(name)
            spent += size
    if not chosen:
        smallest = min((params[n].numel() for n in candidates), default=0)
        raise FreezetuneError(
            f"budget {budget:g} of {total:,} parameters ({int(limit):,}) holds no scored block tensor "
            f"(the smallest has {smallest:,}); raise the budget"
        )
    return chosen, f"{budget:g} of the model's {total:,} parameters = {int(limit):,} in tensors"


def select_tensors(model, layers: LayerMap, scores: LayerScores | Mapping[str, float], *,
                   budget: float | int | None = None, threshold: float | None = None, head: bool = True) -> Plan:
    """Individual block weight tensors by score: the best under ``budget`` or all >= ``threshold``.

    ``budget`` is a tensor count (>= 1) or a share of the model's parameters (< 1) that the
    chosen tensors may hold. Candidates are the blocks' tensors with a positive score (embeddings
    stay frozen; the head trains when ``head``). The plan lists the blocks that own a chosen tensor
    in ``blocks`` and the tensors in ``tensors``, so the frozen prefix below the lowest chosen
    block is still cached.
    """
    chosen, _ = _choose_tensors(model, layers, _tensor_values(scores), budget, threshold)
    how = f"threshold={threshold:g}" if threshold is not None else f"budget={budget:g}"
    owner = layers.block_of_tensor()
    blocks = tuple(sorted({owner[n] for n in chosen}))
    plan = Plan(blocks=blocks, head=head, tensors=tuple(chosen), spec=f"tensors:{how}")
    return plan.validate(layers)


def explain_tensors(model, layers: LayerMap, scores: LayerScores, *, budget: float | int | None = None,
                    threshold: float | None = None) -> str:
    """Why :func:`select_tensors` chose what it chose: the chosen tensors with score and size."""
    values = _tensor_values(scores)
    chosen, text = _choose_tensors(model, layers, values, budget, threshold)
    params = dict(model.named_parameters())
    total = layers.total()
    trained = sum(params[n].numel() for n in chosen)
    lines = [f"auto: scorer={scores.scorer} ({scores.samples} examples), tensor granularity, {text}",
             f"{'score':>7} {'parameters':>12}  tensor"]
    lines += [f"{values[n]:>7.3f} {params[n].numel():>12,}  {n}" for n in chosen]
    owner = layers.block_of_tensor()
    blocks = sorted({owner[n] for n in chosen})
    lines.append(
        f"chosen: {len(chosen)} tensors in blocks {_compact(blocks)} ({trained:,} parameters = {trained / total:.1%} "
        f"of the model; frozen prefix depth {blocks[0]}); head trains, embeddings frozen"
    )
    return "\n".join(lines)


# ---------------------------------------------------------------------- the `auto` strategy's data
@dataclass
class ScoringContext:
    """The labelled sample a run lends to ``auto``, and what ``auto`` did with it."""

    sample: list[dict] | Callable[[], list[dict]]
    records: list[dict[str, Any]] = field(default_factory=list)  # {"scores": LayerScores, "explanation": str}

    def batches(self) -> list[dict]:
        if callable(self.sample):
            self.sample = self.sample()  # built on first use: runs without `auto` never pay for it
        return self.sample


_CONTEXT: ContextVar[ScoringContext | None] = ContextVar("freezetune_scoring_context", default=None)


@contextlib.contextmanager
def scoring_sample(sample: list[dict] | Callable[[], list[dict]]):
    """Within this block, ``auto`` scores on ``sample`` (padded labelled batches, or a factory)."""
    context = ScoringContext(sample)
    token = _CONTEXT.set(context)
    try:
        yield context
    finally:
        _CONTEXT.reset(token)


def context_sample(strategy: str) -> list[dict]:
    """The labelled sample the current run lends to scoring strategies."""
    context = _CONTEXT.get()
    if context is None:
        raise FreezetuneError(
            f"{strategy} needs a labelled sample to score: run it through `freezetune train` / run_training, "
            "or wrap the call in freezetune.scoring.select.scoring_sample(batches)"
        )
    return context.batches()


def record(scores: LayerScores, explanation: str) -> None:
    """Keep what a scoring strategy measured and why it chose, for the run folder and the log."""
    context = _CONTEXT.get()
    if context is not None:
        context.records.append({"scores": scores, "explanation": explanation})


GRANULARITIES = ("block", "tensor")


def auto_plan(layers: LayerMap, *, scorer: str = "semantic", budget: float = 0.25, contiguous: bool = True,
              granularity: str = "block", threshold: float | None = None,
              sample: list[dict] | None = None, max_samples: int = DEFAULT_SAMPLES) -> Plan:
    """Score ``layers.model`` on the run's sample (or ``sample``); select blocks or tensors.

    Block granularity: the blocks worth training under ``budget`` (see :func:`select_blocks`).
    Tensor granularity: the block tensors with the best per-tensor scores under ``budget`` (a
    count, or a parameter share), or every one scoring >= ``threshold`` when it is given.
    """
    if granularity not in GRANULARITIES:
        raise FreezetuneError(f"unknown granularity {granularity!r}; choose block or tensor")
    if granularity == "block":
        if threshold is not None:
            raise FreezetuneError("a score threshold selects tensors: add granularity=tensor, or give a budget")
        _budget(layers, budget)  # a bad budget fails before any scoring
    elif scorer not in TENSOR_SCORERS:
        raise FreezetuneError(
            f"scorer {scorer!r} scores blocks only; tensor granularity needs one of {', '.join(TENSOR_SCORERS)}"
        )
    if sample is None:
        sample = context_sample("auto")
    model = layers.model
    if not hasattr(model, "classifier"):
        raise FreezetuneError("auto scores a sequence classifier (freezetune's SequenceClassifier)")
    result = score(model, sample, scorer, layers=layers, max_samples=max_samples)
    if granularity == "tensor":
        limit = None if threshold is not None else budget
        plan = select_tensors(model, layers, result, budget=limit, threshold=threshold)
        why = explain_tensors(model, layers, result, budget=limit, threshold=threshold)
    else:
        plan = select_blocks(result, layers, budget=budget, contiguous=contiguous)
        why = explain(result, layers, budget=budget, contiguous=contiguous)
    record(result, why)  # the run logs it and writes selection.txt
    return plan
