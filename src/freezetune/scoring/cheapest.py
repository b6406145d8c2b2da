"""The cheapest plan within noise of the best: the candidates, the choice, and the reason in plain words.

The candidates are the frozen-prefix depths d = 0..L (blocks d..L-1 train, the prefix is cached),
those within ``budget`` when one is given. Each gets a predicted loss against training every block
and a predicted cost (:mod:`freezetune.scoring.objective`, :mod:`freezetune.scoring.plan_cost`); the
cheapest whose loss is within the validation data's noise of the best is chosen.
"""

from __future__ import annotations

from dataclasses import dataclass

from freezetune.core.layout import LayerMap
from freezetune.core.plan import Plan
from freezetune.measure.metrics import sampling_error
from freezetune.scoring.objective import (
    LOSS_SCALE,
    block_gain,
    metric_units,
    predicted_loss,
    within_noise,
    within_noise_choice,
)
from freezetune.scoring.plan_cost import predicted_share
from freezetune.scoring.result import LayerScores
from freezetune.scoring.select import compact, within_budget
from freezetune.strategies.registry import resolve

# A metric the noise table does not know (validation loss, a causal LM's default) is read as a share
# in 0..1 like accuracy: its widest standard error is 0.5/√n.
SHARE_METRIC = "accuracy"


@dataclass(frozen=True)
class Choice:
    depth: int
    candidates: tuple[int, ...]  # the depths considered (within the budget)
    losses: tuple[float, ...]  # predicted points lost, per candidate
    costs: tuple[float, ...]  # predicted share of full fine-tuning's time, per candidate
    tied: tuple[int, ...]  # the candidates within noise of the best
    gains: tuple[float, ...]  # per block
    noise: float  # points
    noise_rows: int
    metric: str


def noise_points(metric: str | None, validation_rows: int) -> tuple[float, str]:
    """The metric's sampling error on the validation rows, in points, and the metric it was read as."""
    name = metric if sampling_error(metric or "", 1) else SHARE_METRIC
    return 100 * sampling_error(name, validation_rows), name


def choose(scores: LayerScores, layers: LayerMap, *, support: list[float] | None, validation_rows: int,
           metric: str | None, budget: float | int | None = None, scale: float = LOSS_SCALE) -> Choice:
    """The cheapest depth whose predicted loss is within the noise of the best (see the module doc)."""
    n = layers.num_blocks
    raw = scores.raw if len(scores.raw) == n else scores.scores
    gains = block_gain(raw, support)
    noise, name = noise_points(metric, validation_rows)
    loss_by_depth = predicted_loss(gains, scale * metric_units(name))
    candidates = tuple(d for d in range(n + 1)
                       if budget is None or d == n or within_budget(layers, budget, range(d, n)))
    losses = tuple(loss_by_depth[d] for d in candidates)
    costs = tuple(predicted_share(n, d) for d in candidates)
    pick = within_noise_choice(losses, costs, noise)
    tied = tuple(candidates[i] for i in within_noise(losses, noise))
    return Choice(candidates[pick], candidates, losses, costs, tied, tuple(gains), noise, validation_rows, name)


def chosen_plan(choice: Choice, layers: LayerMap) -> Plan:
    return resolve(f"depth:{choice.depth}", layers)


def _trains(d: int, n: int) -> str:
    return "the head only" if d == n else f"blocks {compact(range(d, n))} and the head"


def explain_choice(choice: Choice, scores: LayerScores, layers: LayerMap, *, support: list[float] | None,
                   rows: int | None, budget: float | int | None = None) -> str:
    """Why this plan, for a reader who never opened docs/scoring.md."""
    n = layers.num_blocks
    total = sum(choice.gains) or 1.0
    lines = [
        f"auto chose depth:{choice.depth}: it trains {_trains(choice.depth, n)}; the embeddings"
        + (f" and blocks {compact(range(choice.depth))} stay frozen, their outputs computed once and cached."
           if choice.depth else " stay frozen."),
        "",
        f"What was measured: on {scores.samples} training rows, how hard the task pulls on each block's weights "
        f"({scores.scorer} scorer: gradient size relative to the weights)"
        + (f", and how much of that pull your {rows:,} training rows can tell apart from sampling noise "
           "(resolved = 1 - noise scale / rows; 0 = the rows cannot resolve it)." if support is not None else "."),
        f"{'block':>5} {'gradient':>10} {'resolved':>9} {'share of the gain':>18}",
    ]
    raw = scores.raw if len(scores.raw) == n else scores.scores
    for b in range(n):
        resolved = f"{max(0.0, 1 - 1 / support[b]) if support[b] > 0 else 0.0:>9.2f}" if support else f"{'':>9}"
        lines.append(f"{b:>5} {raw[b]:>10.4g} {resolved} {choice.gains[b] / total:>17.0%}")
    lines += [
        "",
        f"Noise: on your {choice.noise_rows:,} validation rows, {choice.metric} differences below "
        f"{choice.noise:.1f} points cannot be told apart (the metric's sampling error there), so plans predicted "
        "within that of the best are treated as equally good, and the cheaper one wins.",
        "",
        "Each plan: what it is predicted to give up against training every block (the frozen blocks' share of the "
        f"gain times {LOSS_SCALE * metric_units(choice.metric):g} points of {choice.metric}, a constant calibrated "
        "on six benchmark tasks), and its predicted cost "
        "(share of full fine-tuning's time: training + cache build):",
        f"  {'plan':<9} {'trains':<24} {'predicted loss':>14} {'predicted cost':>14}",
    ]
    for d, loss, cost in zip(choice.candidates, choice.losses, choice.costs):
        mark = "within noise" if d in choice.tied else ""
        mark += ", chosen" if d == choice.depth else ""
        lines.append(f"  {'depth:' + str(d):<9} {_trains(d, n):<24} {loss:>9.1f} pts {cost:>14.2f}  {mark}")
    if budget is not None:
        lines.append(f"Only plans within the budget ({budget:g}) were considered.")
    lines.append("")
    if len(choice.tied) == len(choice.candidates):
        lines.append("Your data cannot separate these plans: every one is predicted within the noise of the best, "
                     f"so the cheapest, depth:{choice.depth}, was chosen. More validation rows would resolve finer "
                     "differences; `auto:objective=metric` trains for the best predicted metric instead.")
    else:
        best = choice.candidates[min(range(len(choice.losses)), key=choice.losses.__getitem__)]
        lines.append(
            f"Why: depth:{choice.depth} is the cheapest of the plans within noise of the best "
            f"({', '.join('depth:' + str(d) for d in choice.tied)}); predicted cost "
            f"{choice.costs[choice.candidates.index(choice.depth)]:.2f} of full fine-tuning, against "
            f"{choice.costs[choice.candidates.index(best)]:.2f} for depth:{best}, the lowest predicted loss. "
            "`auto:objective=metric` trains for the best predicted metric instead.")
    return "\n".join(lines)
