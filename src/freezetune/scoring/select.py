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

Both return plans whose ``spec`` reloads without scoring (``layers:...``, ``tensors:...``);
:func:`explain` and :func:`explain_tensors` say why they chose what they chose.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from freezetune.core.errors import FreezetuneError
from freezetune.core.layout import LayerMap, block_unit
from freezetune.core.plan import Plan
from freezetune.scoring.result import LayerScores


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
        raise FreezetuneError(
            f"budget must be a number: a parameter fraction < 1 or a block count >= 1, got {budget!r}"
        )
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


def within_budget(layers: LayerMap, budget: float | int, blocks: Iterable[int]) -> bool:
    """Whether ``blocks`` fit ``budget`` (a block count, or a share of the model's parameters)."""
    return _budget(layers, budget).fits(tuple(blocks))


def check_budget(layers: LayerMap, budget: float | int) -> None:
    """Fail on a bad block budget before anything is scored."""
    _budget(layers, budget)


def _check_scores(scores: LayerScores, layers: LayerMap) -> list[float]:
    if len(scores.scores) != layers.num_blocks:
        raise FreezetuneError(
            f"{scores.scorer} scores cover {len(scores.scores)} blocks but the model has {layers.num_blocks}"
        )
    return list(scores.scores)


# ---------------------------------------------------------------------- data support
def data_support(scores: LayerScores, rows: int | None) -> list[float] | None:
    """Per block, the training rows over the block's gradient noise scale (None: no noise scale or row count).

    At 1 or more the whole training set's gradient on the block has more signal than sampling noise,
    so training the block learns the task; below 1 it mostly fits the noise of these rows. A block
    whose sample showed no mean gradient above the noise has support 0.
    """
    if scores.noise_scale is None or not rows:
        return None
    return [rows / scale if scale else 0.0 for scale in scores.noise_scale]


# ---------------------------------------------------------------------- block selection
def _choose(values: list[float], budget: _Budget, contiguous: bool, supported: list[bool] | None = None,
            ) -> tuple[tuple[int, ...], list[tuple[int, float]]]:
    """Chosen blocks (none when no supported block fits), and for the suffix mode every admissible (d, total)."""
    n = len(values)
    supported = supported or [True] * n
    if contiguous:
        options = []
        for d in range(n - 1, -1, -1):  # shortest suffix first: ties keep the cheaper one
            blocks = tuple(range(d, n))
            if not budget.fits(blocks):
                if not options:
                    raise FreezetuneError("the budget cannot hold the top block, so no suffix fits; raise the budget")
                break
            if not supported[d]:
                break
            options.append((d, sum(values[d:])))
        if not options:
            return (), options
        best_d = max(options, key=lambda o: o[1])[0]  # max keeps the first of equal totals
        return tuple(range(best_d, n)), options
    chosen: list[int] = []
    for b in sorted(range(n), key=lambda i: (-values[i], -i)):  # ties: the block nearer the output
        if chosen and values[b] <= 0:
            break
        if supported[b] and budget.fits(tuple(chosen + [b])):
            chosen.append(b)
    return tuple(sorted(chosen)), []


def select_blocks(scores: LayerScores, layers: LayerMap, *, budget: float | int, contiguous: bool = True,
                  support: list[float] | None = None) -> Plan:
    """The blocks worth training under ``budget`` (see the module doc); head trains, embeddings frozen.

    With ``support`` (:func:`data_support`) only blocks the training data supports (>= 1) are
    candidates; the plan trains no block when none is. The plan's ``spec`` is the equivalent
    ``layers:...`` spec, so the choice can be re-run without scoring; :func:`explain` says why it
    was made.
    """
    values = _check_scores(scores, layers)
    blocks, _ = _choose(values, _budget(layers, budget), contiguous, _supported(support))
    return Plan(blocks=blocks, spec=f"layers:{compact(blocks)}").validate(layers)


def _supported(support: list[float] | None) -> list[bool] | None:
    return None if support is None else [s >= 1 for s in support]


def explain(scores: LayerScores, layers: LayerMap, *, budget: float | int, contiguous: bool = True,
            support: list[float] | None = None, rows: int | None = None) -> str:
    """Why :func:`select_blocks` chose what it chose: scores, data support, budget, alternatives, choice."""
    values = _check_scores(scores, layers)
    spent = _budget(layers, budget)
    blocks, options = _choose(values, spent, contiguous, _supported(support))
    counts = layers.counts()
    total = layers.total()
    mode = "best contiguous suffix (frozen prefix cached)" if contiguous else "top-scoring blocks"
    lines = [
        f"auto: scorer={scores.scorer} ({scores.samples} examples), budget {spent.text}, {mode}",
        f"{'block':>5} {'score':>7} {'parameters':>12} {'support':>8}  chosen",
    ]
    for i, value in enumerate(values):
        backing = f"{support[i]:>8.2f}" if support is not None else f"{'':>8}"
        lines.append(f"{i:>5} {value:>+7.3f} {counts[block_unit(i)]:>12,} {backing}  {'yes' if i in blocks else ''}")
    if support is not None:
        lines.append(f"support: the {rows:,} training rows over the block's gradient noise scale; a block below 1 "
                     "would mostly fit the noise of these rows, so it is not a candidate")
    if contiguous:
        parts = [f"d={d}: {t:+.3f}" for d, t in options]
        lines.append("suffix d..L-1 within budget" + (" and supported" if support is not None else "")
                     + ", total score: " + (", ".join(parts) or "none"))
    if not blocks:
        lines.append("chosen: no block (the data supports none)")
        return "\n".join(lines)
    trained = sum(counts[block_unit(i)] for i in blocks)
    lines.append(
        f"chosen: blocks {compact(blocks)} ({len(blocks)} of {layers.num_blocks}; {trained:,} parameters = "
        f"{trained / total:.1%} of the model; frozen prefix depth {blocks[0]}); head trains, embeddings frozen"
    )
    if any(v <= 0 for v in values):
        lines.append("blocks scoring <= 0 are added only when they open the way to better ones (suffix) or never (top)")
    return "\n".join(lines)


def compact(blocks: Iterable[int]) -> str:
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
        raise FreezetuneError(
            f"budget must be a positive number (a parameter fraction < 1 or a tensor count), got {budget!r}"
        )
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
    owner = layers.block_of_tensor()
    blocks = tuple(sorted({owner[n] for n in chosen}))
    # The spec names the tensors (the `tensors` strategy), so the plan reloads without scoring.
    spec = f"tensors:{'+'.join(sorted(chosen))}" + ("" if head else ":head=false")
    plan = Plan(blocks=blocks, head=head, tensors=tuple(chosen), spec=spec)
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
        f"chosen: {len(chosen)} tensors in blocks {compact(blocks)} ({trained:,} parameters = {trained / total:.1%} "
        f"of the model; frozen prefix depth {blocks[0]}); head trains, embeddings frozen"
    )
    return "\n".join(lines)
