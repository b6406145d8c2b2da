"""The report's content, once, as neutral blocks that render.py writes as HTML and as Markdown.

Order: what the numbers are (and a warning first when they come from validation), the
recommendation, the table, the plots, then how each measuring plan chose.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from freezetune.measure.costs import WAITED_PARTS
from freezetune.measure.units import format_bytes, format_count, format_duration
from freezetune.report import plots
from freezetune.report.load import Comparison, Plan, Run
from freezetune.report.recommend import best, compromise, criteria, ood_sets, regime, regime_sentence
from freezetune.report.stats import baseline_of, eval_set, learned_nothing, measure, metric, retention, time_waited


@dataclass
class Block:
    kind: str  # heading | paragraph | bullets | table | image | pre
    text: str = ""
    items: list[str] = field(default_factory=list)
    headers: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    path: Path | None = None


NOTHING = " (nothing learned)"


def size_text(n: float | None) -> str:
    return "-" if n is None else format_bytes(n)


def time_text(seconds: float | None) -> str:
    return "-" if seconds is None else format_duration(seconds)


def _pm(plan: Plan, read, fmt: str = ".3f") -> str:
    m = measure(plan, read)
    return "-" if m is None else f"{m.mean:{fmt}} ± {m.std:{fmt}}"


def _cost(plan: Plan, key: str, fallback: Callable[[Run], float | None] | None = None) -> float | None:
    def read(run: Run) -> float | None:
        for value in (run.costs.get(key), run.summary.get(key), fallback(run) if fallback else None):
            if value is not None:
                return value
        return None

    m = measure(plan, read)
    return None if m is None else m.mean


def _time_parts(plan: Plan) -> str:
    """The parts of the time waited, so a cached plan's build is seen beside its training."""
    parts = [_cost(plan, key) for key in WAITED_PARTS]
    if parts[0] is None:
        return "-"
    return " / ".join(time_text(p or 0.0) for p in parts)


def summary_table(comparison: Comparison) -> Block:
    headline = comparison.headline.replace("_", " ")
    names = ood_sets(comparison)
    extra = sorted({n for p in comparison.plans for r in p.runs for n, s in r.eval_sets.items()} - set(names))
    headers = ["plan", "training rows", f"{comparison.split} {headline}"]
    headers += [f"{n} (OOD) {headline}" for n in names] + [f"{n} {headline}" for n in extra]
    headers += ["retention", "time waited", "train / cache / scoring", "trainable params", "checkpoint", "peak memory",
                "seeds", "chose"]
    rows = []
    for plan in sorted(comparison.plans, key=lambda p: (p.train_rows, comparison.plans.index(p))):
        params = _cost(plan, "trainable_params")
        rows.append([
            plan.strategy, f"{plan.train_rows:,}",
            _pm(plan, metric(comparison.headline)) + (NOTHING if learned_nothing(plan, comparison.headline) else ""),
            *[_pm(plan, eval_set(n, comparison.headline)) for n in [*names, *extra]],
            _pm(plan, retention), time_text(_cost(plan, "total_time_s", time_waited)), _time_parts(plan),
            "-" if params is None else format_count(params), size_text(_cost(plan, "checkpoint_bytes")),
            size_text(_cost(plan, "peak_memory_bytes")), str(len(plan.runs)), plan.chosen or "",
        ])
    keep = [i for i, h in enumerate(headers) if i == 0 or any(row[i] not in ("-", "") for row in rows)]
    return Block("table", headers=[headers[i] for i in keep], rows=[[row[i] for i in keep] for row in rows])


def build_document(comparison: Comparison, plot_dir: Path) -> list[Block]:
    blocks = [Block("heading", "freezetune comparison report")]
    headline = comparison.headline.replace("_", " ")
    if comparison.split == "validation":
        blocks.append(Block("paragraph", "**These are validation numbers**: no --test-data was given, and the "
                                         "validation split also picked each run's best epoch (and rate), so they "
                                         "are optimistic. Pass --test-data for unbiased numbers."))
    largest = comparison.sizes[-1]
    counts = sorted({len(p.runs) for p in comparison.plans})
    seeds = f"{counts[0]} seed{'s' * (counts[0] > 1)} each" if len(counts) == 1 else f"{counts[0]}-{counts[-1]} seeds"
    blocks.append(Block("paragraph", f"{len({p.strategy for p in comparison.plans})} plans, {seeds}, "
                                     f"task {comparison.task}, reported metric: {comparison.split} {headline}; "
                                     f"training sizes: {', '.join(f'{n:,}' for n in comparison.sizes)} rows. "
                                     f"Means ± standard deviation over seeds."))
    blocks += recommendation(comparison, largest)
    blocks += [Block("heading", "All plans"), summary_table(comparison)]
    blocks += _plots(comparison, plot_dir)
    blocks += _selections(comparison)
    return blocks


def recommendation(comparison: Comparison, largest: int) -> list[Block]:
    headline = comparison.headline
    # A plan that learned nothing is no answer on any criterion: it keeps the skill and costs little by not learning.
    plans = [p for p in comparison.at(largest) if not learned_nothing(p, headline)]
    idle = [p.strategy for p in comparison.at(largest) if learned_nothing(p, headline)]
    found = criteria(comparison)
    picks = [p for c in found if (p := best(plans, c)) is not None]
    items = [pick.sentence() for pick in picks]
    if idle:
        base = baseline_of(comparison.at(largest), headline)
        items.append(f"**Nothing learned: {', '.join(idle)}**: within noise of always predicting the majority "
                     f"class ({headline.replace('_', ' ')} {base:.3f}); left out of every pick" if plans else
                     f"**Nothing learned by any plan**: every plan is within noise of always predicting the majority "
                     f"class ({headline.replace('_', ' ')} {base:.3f}). Train longer (more epochs or rows) or at a "
                     "higher rate (`--lr-grid auto`) before choosing")
    middle = compromise(plans, [c for c in found if c.key in ("metric", "retention", "cost")])
    if middle is not None:
        plan, scaled = middle
        names = {"metric": comparison.headline.replace("_", " "), "cost": "time"}
        parts = ", ".join(f"{names.get(k, k)} {v:.2f}" for k, v in scaled.items())
        items.append(f"**Pareto compromise: {plan.strategy}** ({headline_value(comparison, plan)}): on the "
                     f"Pareto front, and its worst criterion is the best of any plan (each criterion scaled 0..1 "
                     f"across plans, 1 = best: {parts})")
    return [
        Block("heading", f"Recommendation ({largest:,} training rows)"),
        Block("bullets", items=items),
        Block("paragraph", "A margin is *within seed noise* when it is no larger than the standard deviation of the "
                           "paired per-seed differences (runs with the same seed share data split and head "
                           "initialisation)."),
        Block("paragraph", "**Low-data regime.** " + regime_sentence(regime(comparison))),
    ]


def headline_value(comparison: Comparison, plan: Plan) -> str:
    m = measure(plan, metric(comparison.headline))
    return "-" if m is None else f"{comparison.headline.replace('_', ' ')} {m.mean:.3f}"


def _plots(comparison: Comparison, plot_dir: Path) -> list[Block]:
    figures = [
        ("metric_vs_time.png", plots.metric_vs_time,
         "Task metric against the time waited (training, cache build and scoring)."),
        ("metric_vs_retention.png", plots.metric_vs_retention,
         "Task metric against retention of pretrained skill, with the Pareto front."),
        ("learning_curves.png", plots.learning_curves,
         "Learning curves across training sizes; hollow points learned nothing (within noise of the majority "
         "class, the dashed line)."),
        ("in_vs_out_of_domain.png", plots.in_vs_out_of_domain, "In-domain against out-of-domain score."),
        ("training_curves.png", plots.training_curves, "Training loss and validation metric of every run."),
    ]
    blocks = [Block("heading", "Plots")]
    for name, draw, caption in figures:
        path = draw(comparison, plot_dir / name)
        if path is not None:
            blocks += [Block("paragraph", caption), Block("image", text=caption, path=path)]
    scores = _scores(comparison)
    if scores:
        path = plots.block_scores(scores, plot_dir / "block_scores.png")
        blocks += [Block("paragraph", "Per-block scores (seed 0 of each measuring plan)."),
                   Block("image", text="per-block scores", path=path)]
    for plan in comparison.largest:
        timeline = next((r.folder / "timeline.png" for r in plan.runs if (r.folder / "timeline.png").is_file()), None)
        if timeline is not None:
            blocks += [Block("paragraph", f"Schedule timeline of {plan.strategy} (seed 0)."),
                       Block("image", text=f"{plan.strategy} timeline", path=timeline)]
    return blocks


def _scores(comparison: Comparison) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for plan in comparison.largest:
        file = next((r.folder / "scores.json" for r in plan.runs if (r.folder / "scores.json").is_file()), None)
        if file is not None:
            found.append((plan.strategy, json.loads(file.read_text())))
    return found


def _selections(comparison: Comparison) -> list[Block]:
    blocks = []
    for plan in comparison.largest:
        for run in plan.runs:
            why = run.folder / "selection.txt"
            if why.is_file():
                blocks += [Block("heading", f"How {plan.strategy} chose (seed {run.seed})"),
                           Block("pre", why.read_text().strip())]
    return blocks

