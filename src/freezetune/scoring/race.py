"""``auto:method=race``: choose the frozen-prefix depth by training the candidates briefly.

Multi-fidelity selection by successive halving (Jamieson & Talwalkar 2016; Li et al., Hyperband):

1. Candidates are the contiguous-suffix plans ``depth:d`` (embeddings and blocks ``0..d-1``
   frozen), every depth from 0 to L on models of up to 12 blocks, else 9 evenly spaced depths,
   each at its default rate (``strategies.lr_policy.default_lr``) times every factor of ``rates``.
   A ``budget`` (trained share or block count) removes the candidates that exceed it.
2. Rung ``r`` trains each surviving candidate from the same start (the run's model, untouched,
   with the run's head) for ``n_r = n_0 * eta**r`` optimizer steps of the run's own settings (its
   warm-up and decay compressed to those steps), on one seeded subset of the training data, and
   scores it on the validation data with the run's selection metric. The best ``1/eta`` survive:
   the metric ranks them where it tells them apart (by more than its sampling error on the
   validation rows, :func:`freezetune.measure.metrics.sampling_error`); the candidates within
   that margin of the best are ranked by validation loss, which is smooth where an early metric is
   flat (after 3 steps every CoLA candidate scores MCC 0); exact ties go to the deeper prefix.
3. The candidates share the frozen-prefix cache: each boundary's outputs are computed once for
   the race's training subset and the validation data, and every rung at that depth reuses them.
4. ``n_0`` is the largest step count whose estimated cost stays within ``share`` of one full run
   of the same settings (cost model below), so the race's price is fixed before it starts.

A retention floor (``retention=R``) rides on the race's winner as on every method's choice: the
run itself enforces it (:mod:`freezetune.scoring.retention_guard`).

Cost model, in forward passes of one example through the whole model: a training example at
depth d costs ``3 * f_d`` (forward plus a backward of twice its cost, through the trained share
``f_d = (L - d) / L`` of the blocks only: the prefix is cached), an evaluated example ``f_d``,
and the cache costs one forward of the prefix per example and boundary. One full run costs
``3 * steps * batch`` (nothing is cached at depth 0) plus ``epochs * validation rows``.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass, field, replace

from freezetune.core.config import TrainConfig
from freezetune.core.errors import FreezetuneError
from freezetune.core.layout import HEAD, LayerMap, block_unit
from freezetune.core.plan import Plan
from freezetune.measure.metrics import METRIC_DIRECTIONS, is_better, sampling_error
from freezetune.measure.units import format_duration
from freezetune.scoring.select import within_budget
from freezetune.strategies.lr_policy import default_lr
from freezetune.strategies.registry import ResolveContext, resolve
from freezetune.tasks.task import monitored_metric
from freezetune.training.finetuner import Finetuner

log = logging.getLogger("freezetune")

MAX_CANDIDATES = 9


@dataclass
class Candidate:
    spec: str  # "depth:3"
    plan: Plan
    depth: int
    lr: float
    factor: float
    results: list[tuple[int, float]] = field(default_factory=list)  # (steps, validation metric) per rung
    losses: list[float] = field(default_factory=list)  # validation loss per rung (nan when the task has none)

    @property
    def name(self) -> str:
        return self.spec + ("" if self.factor == 1 else f" (lr x{self.factor:g})")


@dataclass
class RaceResult:
    chosen: Candidate
    candidates: list[Candidate]
    rungs: list[int]  # steps per rung
    seconds: float
    estimated_share: float  # estimated cost / one full run
    eta: int
    metric: str
    full_steps: int
    margin: float  # the metric's sampling error on the validation rows: closer scores are ranked by loss
    note: str = ""


def depths(num_blocks: int) -> list[int]:
    """Candidate frozen-prefix depths: all of 0..L on small models, else evenly spaced ones."""
    if num_blocks + 1 <= MAX_CANDIDATES + 3:
        return list(range(num_blocks + 1))
    return sorted({round(i * num_blocks / (MAX_CANDIDATES - 1)) for i in range(MAX_CANDIDATES)})


def _full_steps(config: TrainConfig, train_rows: int) -> int:
    per_epoch = math.ceil(math.ceil(train_rows / config.batch_size) / config.grad_accum)
    return config.max_steps or per_epoch * config.epochs


def _plan_cost(depth: int, num_blocks: int) -> float:
    """Share of the model a step at this depth runs through (the head counts as a sliver)."""
    return max(num_blocks - depth, 0.1) / num_blocks


def estimate_cost(costs: list[float], n0: int, eta: int, batch: int, validation_rows: int,
                  num_blocks: int, depths_: list[int], train_rows: int) -> float:
    """Upper bound of the race's cost (see the module doc): the dearest candidates assumed to survive."""
    survivors, steps, total = sorted(costs, reverse=True), n0, 0.0
    while survivors:
        total += sum(3 * steps * batch * f + validation_rows * f for f in survivors)
        survivors = survivors[: max(1, len(survivors) // eta)]
        if len(survivors) == 1:
            break
        steps *= eta
    # The cache: one forward of the prefix per example (race subset + validation) and boundary.
    total += sum(d / num_blocks for d in depths_) * (min(train_rows, steps * batch) + validation_rows)
    return total


def race_plan(layers: LayerMap, context: ResolveContext, *, budget: float | None = None, share: float = 0.25,
              eta: int = 3, rates: tuple[float, ...] = (1.0,)) -> RaceResult:
    """Run the race on ``context`` (model, task, training and validation data, settings)."""
    if context.train is None or context.validation is None:
        raise FreezetuneError("auto:method=race trains candidates: it needs the training and validation data "
                              "(freezetune train / compare pass them; Finetuner(..., sample=train, validation=val))")
    if not 0 < share <= 1:
        raise FreezetuneError(f"share must be in (0, 1] (the race's cost as a share of one run), got {share}")
    if eta < 2:
        raise FreezetuneError(f"eta must be at least 2 (the share of candidates kept per rung is 1/eta), got {eta}")
    if any(r <= 0 for r in rates):
        raise FreezetuneError(f"rates are positive factors of each plan's default rate, got {rates}")
    started = time.perf_counter()
    config = rung_config(context.config)
    candidates = _candidates(layers, budget, rates)
    train, validation = context.train, context.validation
    full_steps = _full_steps(config, len(train))
    one_run = 3 * full_steps * config.batch_size + config.epochs * len(validation)
    costs = [_plan_cost(c.depth, layers.num_blocks) for c in candidates]
    used_depths = sorted({c.depth for c in candidates})

    def cost(n0: int) -> float:
        return estimate_cost(costs, n0, eta, config.batch_size, len(validation), layers.num_blocks, used_depths,
                             len(train))

    n0 = 1
    while cost(n0 + 1) <= share * one_run and (n0 + 1) <= full_steps:
        n0 += 1
    over = cost(n0) > share * one_run
    rungs = _rungs(len(candidates), n0, eta, full_steps)
    subset = train.shuffle(seed=config.seed).select(range(min(len(train), rungs[-1] * config.batch_size)))
    metric = monitored_metric(context.task, config.metric)
    directions = context.task.directions if context.task is not None else METRIC_DIRECTIONS
    margin = sampling_error(metric, len(validation))
    alive = list(candidates)
    for r, steps in enumerate(rungs):
        for c in alive:
            metrics = train_rung(context, c.plan, config, steps=steps, lr=c.lr, train=subset)
            c.results.append((steps, metrics[metric]))
            c.losses.append(float(metrics.get("loss", math.nan)))
            log.info("race rung %d (%d steps): %s %s=%.4f loss=%.4f", r + 1, steps, c.name, metric, metrics[metric],
                     c.losses[-1])
        alive = _ranked(alive, metric, directions, margin)[: max(1, len(alive) // eta)]
    note = (f"Even the shortest race (1 step per candidate in the first rung) costs about {cost(n0) / one_run:.0%} "
            f"of one run, more than share={share:g}: the data set is small next to its validation set.") if over else ""
    return RaceResult(alive[0], candidates, rungs, time.perf_counter() - started, cost(n0) / one_run, eta, metric,
                      full_steps, margin, note)


def rung_config(config: TrainConfig | None) -> TrainConfig:
    """The run's settings as a rung trains with them: quiet, no early stop, keep-best or checkpoints, cache on."""
    return replace(config or TrainConfig(), progress=False, patience=None, eval_every=None, keep_best=False,
                   save_every=None, cache="on")


def train_rung(context: ResolveContext, plan: Plan, config: TrainConfig, *, steps: int, lr: float, train
               ) -> dict:
    """One candidate trained from a copy of ``context.model`` for ``steps`` steps of ``config`` (its warm-up
    and decay compressed to them) on ``train``; its metrics on ``context.validation``."""
    tuner = Finetuner(copy.deepcopy(context.model), plan, config=replace(config, max_steps=steps, lr=lr),
                      task=context.task, pad_token_id=context.pad_token_id, cache_store=context.cache_store)
    fit = tuner.fit(train, context.validation)
    return fit.best_metrics or tuner.evaluate(context.validation)


def chosen_plan(result: RaceResult, layers: LayerMap) -> Plan:
    """The winner as a Plan; a rate factor other than 1 rides along as a multiplier of every trained unit."""
    c = result.chosen
    if c.factor == 1:
        return c.plan
    units = [block_unit(b) for b in c.plan.trainable_blocks(layers.num_blocks)] + [HEAD]
    return replace(c.plan, lr_multipliers=tuple((u, c.factor) for u in units), spec=c.spec)


def _candidates(layers: LayerMap, budget: float | None, rates: tuple[float, ...]) -> list[Candidate]:
    out = []
    for d in depths(layers.num_blocks):
        plan = resolve(f"depth:{d}", layers)
        if budget is None or within_budget(layers, budget, plan.trainable_blocks(layers.num_blocks)):
            out += [Candidate(f"depth:{d}", plan, d, default_lr(plan, layers) * f, f) for f in rates]
    if not out:
        raise FreezetuneError(f"no frozen-prefix depth fits budget {budget:g}; raise the budget")
    return out


def _rungs(candidates: int, n0: int, eta: int, full_steps: int) -> list[int]:
    """Steps per rung: eta times longer each, until one candidate is left."""
    rungs, steps, alive = [], n0, candidates
    while True:  # the rung that leaves one candidate is the last: the winner trains fully afterwards anyway
        rungs.append(min(steps, full_steps))
        alive = max(1, alive // eta)
        if alive == 1:
            return rungs
        steps *= eta


def _ranked(candidates: list[Candidate], metric: str, directions, margin: float = 0.0) -> list[Candidate]:
    """Best first by the last rung's validation metric, the candidates within ``margin`` of the best by
    validation loss (the metric does not tell them apart), exact ties to the deeper (cheaper) prefix."""
    by_metric: list[Candidate] = []
    for c in sorted(candidates, key=lambda c: -c.depth):
        i = 0
        while i < len(by_metric) and not is_better(metric, c.results[-1][1], by_metric[i].results[-1][1], directions):
            i += 1
        by_metric.insert(i, c)
    best = by_metric[0].results[-1][1]
    close = [c for c in by_metric if abs(c.results[-1][1] - best) <= margin]
    if len(close) < 2 or any(math.isnan(c.losses[-1]) for c in close):
        return by_metric
    close.sort(key=lambda c: (c.losses[-1], -c.depth))
    return close + [c for c in by_metric if c not in close]


def explain_race(result: RaceResult) -> str:
    """What the race chose, what else it tried and how each candidate scored, in plain words."""
    rungs = ", ".join(str(s) for s in result.rungs)
    tie = (f"; candidates within {result.margin:.4f} of the best (the sampling error of the validation rows) "
           f"are ranked by validation loss" if result.margin else "")
    lines = [
        f"auto: method=race; {len(result.candidates)} candidates trained for {rungs} steps (successive halving, "
        f"1/{result.eta} kept per rung) on the training data and ranked by validation {result.metric}{tie}; "
        f"one full run is {result.full_steps} steps. Race cost: {format_duration(result.seconds)} "
        f"(estimated {result.estimated_share:.0%} of one full run).",
        f"{'candidate':<24} " + " ".join(f"{f'{s} steps: {result.metric} / loss':>28}" for s in result.rungs),
    ]
    for c in sorted(result.candidates, key=lambda c: (-len(c.results), c.depth)):
        cells = {steps: f"{value:.4f} / {loss:.4f}" for (steps, value), loss in zip(c.results, c.losses)}
        row = f"{c.name:<24} " + " ".join(f"{cells.get(s, '-'):>28}" for s in result.rungs)
        lines.append(row + ("   <- chosen" if c is result.chosen else ""))
    lines.append(f"chosen: {result.chosen.name}, validation {result.metric} {result.chosen.results[-1][1]:.4f} after "
                 f"{result.chosen.results[-1][0]} steps")
    if result.rungs[-1] * 3 < result.full_steps:
        lines.append(f"The last rung trained {result.rungs[-1]} of the run's {result.full_steps} steps: a short "
                     "run favours the plans that learn fastest (fewer blocks at a higher rate), and its ranking may "
                     "not hold at the end of a full run (docs/scoring.md, 'Why the race loses here').")
    if result.note:
        lines.append(result.note)
    return "\n".join(lines)


def race_record(result: RaceResult) -> dict:
    """The race as JSON (race.json in the run folder)."""
    return {
        "chosen": result.chosen.name, "metric": result.metric, "rungs": result.rungs, "eta": result.eta,
        "seconds": result.seconds, "estimated_share": result.estimated_share, "full_steps": result.full_steps,
        "note": result.note, "margin": result.margin,
        "candidates": [{"name": c.name, "spec": c.spec, "lr": c.lr, "results": c.results, "losses": c.losses}
                       for c in result.candidates],
    }
