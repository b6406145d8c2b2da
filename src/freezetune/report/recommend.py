"""The recommendation, computed from the measured numbers only.

For each criterion (task metric, retention, cost, out-of-domain score) the best plan at the
largest training size, with its margin over the runner-up and whether that margin is beyond
seed noise (stats.py). The Pareto compromise is the plan, among those no other plan beats on
every criterion at once, whose *worst* criterion is best after scaling each criterion to 0..1
across plans (so it gives up least anywhere). The regime comes from the learning curves:
at each training size, does the best fixed plan that freezes something beat full fine-tuning?
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from freezetune.measure.units import format_duration
from freezetune.report.load import Comparison, Plan, Run
from freezetune.report.stats import (
    Margin,
    Measure,
    eval_set,
    higher_is_better,
    learned_nothing,
    margin,
    measure,
    metric,
    retention,
    time_waited,
)


@dataclass
class Criterion:
    key: str  # metric | retention | cost | ood
    title: str
    read: Callable[[Run], float | None]
    larger_is_better: bool
    show: Callable[[float], str] = "{:.3f}".format


@dataclass
class Pick:
    criterion: Criterion
    plan: Plan
    value: Measure
    runner_up: Plan | None
    runner_value: Measure | None
    margin: Margin | None

    def sentence(self) -> str:
        c = self.criterion
        text = f"**{c.title}: {self.plan.strategy}** ({c.show(self.value.mean)} ± {c.show(self.value.std)})"
        if self.runner_up is None or self.margin is None:
            return text + "; the only plan measured"
        return (f"{text}; runner-up {self.runner_up.strategy} ({c.show(self.runner_value.mean)}): "
                f"{self.margin.describe(c.show)}")


def criteria(comparison: Comparison) -> list[Criterion]:
    headline = comparison.headline
    found = [Criterion("metric", f"best {headline.replace('_', ' ')}", metric(headline),
                       higher_is_better(headline))]
    references = {r.summary.get("retention_reference") for p in comparison.plans for r in p.runs
                  if retention(r) is not None}
    if references:  # perplexity on reference text: lower after fine-tuning is better kept
        found.append(Criterion("retention", "best retention of pretrained skill", retention,
                               references != {"ppl"}))
    found.append(Criterion("cost", "cheapest (time waited: training + cache build + scoring)", time_waited, False,
                           format_duration))
    ood = ood_sets(comparison)
    if ood:
        name = ood[0]
        found.append(Criterion("ood", f"best out-of-domain {headline.replace('_', ' ')} ({name})",
                               eval_set(name, headline), higher_is_better(headline)))
    return found


def ood_sets(comparison: Comparison) -> list[str]:
    names = {n for p in comparison.plans for r in p.runs for n, s in r.eval_sets.items() if s.get("kind") == "ood"}
    return sorted(names)


def best(plans: list[Plan], criterion: Criterion) -> Pick | None:
    measured = [(p, m) for p in plans if (m := measure(p, criterion.read)) is not None]
    if not measured:
        return None
    sign = 1 if criterion.larger_is_better else -1
    measured.sort(key=lambda pm: sign * pm[1].mean, reverse=True)
    (plan, value), rest = measured[0], measured[1:]
    if not rest:
        return Pick(criterion, plan, value, None, None, None)
    runner, runner_value = rest[0]
    return Pick(criterion, plan, value, runner, runner_value, margin(value, runner_value, criterion.larger_is_better))


def pareto_front(plans: list[Plan], chosen: list[Criterion]) -> list[Plan]:
    """Plans that no other plan matches or beats on every criterion while beating on one."""
    means = {p.strategy: _oriented(p, chosen) for p in plans}
    means = {k: v for k, v in means.items() if v is not None}

    def dominated(a: list[float]) -> bool:
        return any(all(x >= y for x, y in zip(b, a)) and any(x > y for x, y in zip(b, a))
                   for b in means.values() if b is not a)

    return [p for p in plans if p.strategy in means and not dominated(means[p.strategy])]


def compromise(plans: list[Plan], chosen: list[Criterion]) -> tuple[Plan, dict[str, float]] | None:
    """The Pareto plan whose worst criterion, scaled to 0..1 across plans, is best."""
    values = {p.strategy: v for p in plans if (v := _oriented(p, chosen)) is not None}
    if len(values) < 2:
        return None
    lows = [min(v[i] for v in values.values()) for i in range(len(chosen))]
    highs = [max(v[i] for v in values.values()) for i in range(len(chosen))]
    scaled = {k: [(x - lo) / (hi - lo) if hi > lo else 1.0 for x, lo, hi in zip(v, lows, highs)]
              for k, v in values.items()}
    front = pareto_front(plans, chosen)
    pick = max(front, key=lambda p: (min(scaled[p.strategy]), sum(scaled[p.strategy])))
    return pick, dict(zip((c.key for c in chosen), scaled[pick.strategy]))


def _oriented(plan: Plan, chosen: list[Criterion]) -> list[float] | None:
    """The plan's mean on each criterion, signed so that larger is better; None if one is missing."""
    out = []
    for c in chosen:
        m = measure(plan, c.read)
        if m is None:
            return None
        out.append(m.mean if c.larger_is_better else -m.mean)
    return out


@dataclass
class RegimePoint:
    train_rows: int
    full: Measure
    frozen: Plan  # the best plan that freezes something
    frozen_value: Measure
    margin: Margin  # frozen minus full, in the better direction
    frozen_idle: bool = False  # the best freezing plan is within noise of the majority class
    full_idle: bool = False  # full fine-tuning is

    @property
    def nothing_learned(self) -> bool:
        return self.frozen_idle and self.full_idle


def regime(comparison: Comparison) -> list[RegimePoint]:
    """At each training size: the best freezing plan against full fine-tuning."""
    headline = comparison.headline
    larger = higher_is_better(headline)
    points = []
    for rows in comparison.sizes:
        plans = comparison.at(rows)
        full = next((p for p in plans if p.strategy == "full"), None)
        # fixed freezing plans: not full, not LoRA, not a measuring plan (auto may choose every block)
        frozen = [(p, m) for p in plans if p.strategy != "full" and not p.strategy.startswith("lora")
                  and not p.chosen and (m := measure(p, metric(headline))) is not None]
        full_value = measure(full, metric(headline)) if full else None
        if full_value is None or not frozen:
            continue
        plan, value = max(frozen, key=lambda pm: pm[1].mean if larger else -pm[1].mean)
        points.append(RegimePoint(rows, full_value, plan, value, margin(value, full_value, larger),
                                  learned_nothing(plan, headline), learned_nothing(full, headline)))
    return points


def regime_sentence(points: list[RegimePoint]) -> str:
    if not points:
        return "No learning curve: compare needs `full` and a freezing plan (and --train-sizes for a curve)."
    parts = []
    for point in points:
        wins = point.margin.value > 0
        noise = point.margin.within_noise
        verdict = ("nothing learned (every plan within noise of the majority class)" if point.nothing_learned else
                   f"full fine-tuning wins ({point.frozen.strategy} learned nothing)" if point.frozen_idle else
                   f"freezing ({point.frozen.strategy}) wins (full fine-tuning learned nothing)" if point.full_idle else
                   "a tie within seed noise" if noise else
                   f"freezing ({point.frozen.strategy}) wins" if wins else "full fine-tuning wins")
        unknown = "; one seed: noise unknown" if noise is None else ""
        parts.append(f"{point.train_rows:,} rows: {verdict} ({point.margin.value:+.3f}{unknown})")
    last = points[-1]
    if last.nothing_learned:
        where = "At your data's full size no plan learned anything, so this run cannot say where freezing wins"
    elif last.frozen_idle:
        where = "At your data's full size you are in the regime where full fine-tuning wins: no freezing plan learned"
    elif last.full_idle:
        where = "At your data's full size you are in the regime where freezing wins: full fine-tuning learned nothing"
    elif last.margin.within_noise:
        where = ("At your data's full size freezing and full fine-tuning are within seed noise of each other, so "
                 "freezing costs nothing in quality here")
    elif last.margin.value > 0:
        where = "At your data's full size you are in the regime where freezing wins"
    else:
        where = "At your data's full size you are in the regime where full fine-tuning wins"
    if len(points) == 1:
        where += " (one training size measured: pass --train-sizes for a learning curve)"
    return f"{where}. " + "; ".join(parts) + "."
