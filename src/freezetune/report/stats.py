"""Numbers over seeds: a measure's mean and spread, and whether one plan beats another beyond noise.

Runs of two plans with the same seed share the data split and the head's initialisation, so
plans are compared by their *paired* per-seed differences: a margin counts as real only when
it is larger than the spread (sample standard deviation) of those differences. With one seed
there is no spread, and the report says that it cannot tell.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass

from freezetune.measure.costs import waited_s
from freezetune.measure.metrics import METRIC_DIRECTIONS, nothing_learned
from freezetune.report.load import Plan, Run
from freezetune.tasks.causal_lm import LM_DIRECTIONS

DIRECTIONS = {**METRIC_DIRECTIONS, **LM_DIRECTIONS}


def higher_is_better(metric: str) -> bool:
    return DIRECTIONS.get(metric, "max") == "max"


@dataclass
class Measure:
    """One quantity of one plan, seed by seed."""

    by_seed: dict[int, float]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.by_seed.values())

    @property
    def std(self) -> float:
        values = list(self.by_seed.values())
        return statistics.stdev(values) if len(values) > 1 else 0.0

    @property
    def n(self) -> int:
        return len(self.by_seed)


def measure(plan: Plan, read: Callable[[Run], float | None]) -> Measure | None:
    """``read`` applied to every run of ``plan``; None when no run has the quantity."""
    values = {}
    for run in plan.runs:
        value = read(run)
        if value is not None:
            values[run.seed] = float(value)
    return Measure(values) if values else None


def metric(name: str) -> Callable[[Run], float | None]:
    return lambda run: run.reported.get(name)


def retention(run: Run) -> float | None:
    return run.summary.get("retention_after")


def time_waited(run: Run) -> float | None:
    """Training + cache build + scoring: what the user waited for (measure/costs.py)."""
    return waited_s(run.costs)


def eval_set(name: str, metric_name: str) -> Callable[[Run], float | None]:
    return lambda run: run.eval_sets.get(name, {}).get(metric_name)


def baseline_of(plans: list[Plan], name: str) -> float | None:
    """The majority class's score on the reported split (the same rows for every run of a comparison)."""
    values = [r.baseline[name] for p in plans for r in p.runs if name in r.baseline]
    return statistics.fmean(values) if values else None


def learned_nothing(plan: Plan, name: str) -> bool:
    """Whether the plan's mean is within noise of the majority class: rows' sampling error or seed spread."""
    m, base = measure(plan, metric(name)), baseline_of([plan], name)
    if m is None or base is None:
        return False
    rows = max((r.reported.get("n") or 0 for r in plan.runs), default=0)
    return nothing_learned(m.mean, base, name, rows, m.std, higher_is_better(name))


@dataclass
class Margin:
    """How far a leader is ahead of the runner-up, and whether that is beyond seed noise."""

    value: float  # leader minus runner-up, in the direction where larger is better
    spread: float | None  # std of the paired per-seed differences; None with fewer than 2 shared seeds

    @property
    def within_noise(self) -> bool | None:
        return None if self.spread is None else abs(self.value) <= self.spread

    def describe(self, show: Callable[[float], str] = "{:.3f}".format) -> str:
        if self.spread is None:
            return f"ahead by {show(self.value)} (one seed: noise unknown)"
        verdict = "within seed noise" if self.within_noise else "beyond seed noise"
        return f"ahead by {show(self.value)}, {verdict} (paired seed spread {show(self.spread)})"


def margin(leader: Measure, runner_up: Measure, larger_is_better: bool = True) -> Margin:
    sign = 1 if larger_is_better else -1
    shared = sorted(set(leader.by_seed) & set(runner_up.by_seed))
    differences = [sign * (leader.by_seed[s] - runner_up.by_seed[s]) for s in shared]
    spread = statistics.stdev(differences) if len(differences) > 1 else None
    return Margin(sign * (leader.mean - runner_up.mean), spread)
