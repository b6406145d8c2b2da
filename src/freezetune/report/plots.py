"""The report's figures, one function each; every point is a mean over seeds with its spread as error bars.

Metrics where lower is better (loss, perplexity) are drawn on an inverted axis, so "up" always
means better. Figures use matplotlib's object API (no pyplot: no global state, no display).
"""

from __future__ import annotations

from pathlib import Path

from freezetune.core.figures import new_figure, save_png
from freezetune.report.load import Comparison, Plan
from freezetune.report.recommend import criteria, ood_sets, pareto_front
from freezetune.report.stats import (
    baseline_of,
    eval_set,
    higher_is_better,
    learned_nothing,
    measure,
    metric,
    retention,
    time_waited,
)
from freezetune.runs.score import plot_scores
from freezetune.scoring.result import LayerScores


def _figure(width: float = 7.0, height: float = 4.5, columns: int = 1):
    figure = new_figure(width, height)
    return figure, figure.subplots(1, columns)


def _save(figure, path: Path) -> Path:
    return save_png(figure, path)


def _metric_axis(axes, comparison: Comparison, which: str = "y", label: str | None = None) -> None:
    name = label or f"{comparison.split} {comparison.headline.replace('_', ' ')}"
    if higher_is_better(comparison.headline):
        text = f"{name} (higher is better)"
    else:
        text = f"{name} (lower is better; axis inverted)"
        (axes.invert_yaxis if which == "y" else axes.invert_xaxis)()
    (axes.set_ylabel if which == "y" else axes.set_xlabel)(text)


def _colors(plans: list[Plan]) -> dict[str, str]:
    palette = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink",
               "tab:gray", "tab:olive", "tab:cyan", "black", "gold", "navy", "lime", "teal", "maroon", "magenta",
               "darkkhaki", "slateblue", "coral"]  # 20 plans before a colour repeats
    strategies = list(dict.fromkeys(p.strategy for p in plans))
    return {s: palette[i % len(palette)] for i, s in enumerate(strategies)}


def _scatter(axes, plans: list[Plan], x_read, y_read, colors) -> list[tuple[Plan, float, float]]:
    points = []
    for plan in plans:
        x, y = measure(plan, x_read), measure(plan, y_read)
        if x is None or y is None:
            continue
        axes.errorbar(x.mean, y.mean, xerr=x.std, yerr=y.std, fmt="o", capsize=3, color=colors[plan.strategy],
                      label=plan.strategy)
        axes.annotate(plan.strategy, (x.mean, y.mean), textcoords="offset points", xytext=(5, 5), fontsize=8)
        points.append((plan, x.mean, y.mean))
    return points


def metric_vs_time(comparison: Comparison, path: Path) -> Path | None:
    plans = comparison.largest
    figure, axes = _figure()
    if not _scatter(axes, plans, time_waited, metric(comparison.headline), _colors(comparison.plans)):
        return None
    axes.set_xlabel("time waited: training + cache build + scoring (s, mean ± std over seeds)")
    _metric_axis(axes, comparison)
    axes.set_title(f"task metric against time waited ({comparison.sizes[-1]:,} training rows)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="best")
    return _save(figure, path)


def metric_vs_retention(comparison: Comparison, path: Path) -> Path | None:
    plans = comparison.largest
    if not any(retention(r) is not None for p in plans for r in p.runs):
        return None
    figure, axes = _figure()
    points = _scatter(axes, plans, retention, metric(comparison.headline), _colors(comparison.plans))
    chosen = [c for c in criteria(comparison) if c.key in ("metric", "retention")]
    front = {p.strategy for p in pareto_front([p for p, _, _ in points], chosen)}
    line = sorted((x, y) for p, x, y in points if p.strategy in front)
    if line:
        axes.plot(*zip(*line), "--o", color="black", alpha=0.6, markersize=14, markerfacecolor="none",
                  label="Pareto front")
    reference = next((r.summary.get("retention_reference") for p in plans for r in p.runs), None)
    if reference == "ppl":
        axes.set_xlabel("reference-text perplexity after fine-tuning (lower is better; axis inverted)")
        axes.invert_xaxis()
    else:
        axes.set_xlabel(f"retention of pretrained skill ({reference or 'score'} after fine-tuning; higher is better)")
    _metric_axis(axes, comparison)
    axes.set_title("task metric against retention (ringed: the Pareto front)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="best")
    return _save(figure, path)


def learning_curves(comparison: Comparison, path: Path) -> Path | None:
    if len(comparison.sizes) < 2:
        return None
    figure, axes = _figure()
    colors = _colors(comparison.plans)
    for strategy in dict.fromkeys(p.strategy for p in comparison.plans):
        xs, ys, errors, idle = [], [], [], []
        for plan in sorted((p for p in comparison.plans if p.strategy == strategy), key=lambda p: p.train_rows):
            m = measure(plan, metric(comparison.headline))
            if m is not None:
                xs.append(plan.train_rows)
                ys.append(m.mean)
                errors.append(m.std)
                idle.append(learned_nothing(plan, comparison.headline))
        if xs:
            axes.errorbar(xs, ys, yerr=errors, fmt="o-", capsize=3, color=colors[strategy], label=strategy)
            hollow = [(x, y) for x, y, i in zip(xs, ys, idle) if i]  # learned nothing: no point of the curve
            if hollow:
                axes.scatter(*zip(*hollow), s=60, facecolors="white", edgecolors=colors[strategy], zorder=3)
    base = baseline_of(comparison.plans, comparison.headline)
    if base is not None:
        axes.axhline(base, color="grey", linestyle="--", linewidth=1, label="majority class (nothing learned)")
    axes.set_xscale("log")
    axes.set_xticks(comparison.sizes, [f"{n:,}" for n in comparison.sizes])
    axes.minorticks_off()
    axes.set_xlabel("training rows (log scale)")
    _metric_axis(axes, comparison)
    axes.set_title("learning curves: where freezing wins and where it loses")
    axes.grid(alpha=0.3, which="both")
    axes.legend(fontsize=8, loc="best")
    return _save(figure, path)


def in_vs_out_of_domain(comparison: Comparison, path: Path) -> Path | None:
    names = ood_sets(comparison)
    if not names:
        return None
    plans = comparison.largest
    figure, axes = _figure(width=max(7.0, 1.1 * len(plans) + 2))
    width = 0.8 / (1 + len(names))
    series = [("in-domain", metric(comparison.headline))]
    series += [(f"{name} (out of domain)", eval_set(name, comparison.headline)) for name in names]
    for i, (label, read) in enumerate(series):
        means, errors = [], []
        for plan in plans:
            m = measure(plan, read)
            means.append(m.mean if m else float("nan"))
            errors.append(m.std if m else 0.0)
        positions = [j + (i - len(names) / 2) * width for j in range(len(plans))]
        axes.bar(positions, means, width=width, yerr=errors, capsize=3, label=label)
    axes.set_xticks(range(len(plans)), [p.strategy for p in plans], rotation=20, ha="right")
    _metric_axis(axes, comparison, label=comparison.headline.replace("_", " "))
    low = min((m.mean for p in plans for _, r in series if (m := measure(p, r))), default=0.0)
    if higher_is_better(comparison.headline):
        axes.set_ylim(bottom=max(0.0, low - 0.1))
    axes.set_title("in-domain against out-of-domain score per plan")
    axes.grid(alpha=0.3, axis="y")
    axes.legend(fontsize=8, loc="best")
    return _save(figure, path)


def block_scores(scores: list[tuple[str, dict]], path: Path) -> Path | None:
    """Per-block scores of each measuring plan (its runs' scores.json), drawn as `freezetune score` draws them."""
    if not scores:
        return None
    return plot_scores([LayerScores.from_dict(data) for _, data in scores], path)


def training_curves(comparison: Comparison, path: Path) -> Path | None:
    """Training loss and validation metric over steps for every run (one colour per plan)."""
    figure, (loss_axes, eval_axes) = _figure(width=11.0, height=4.5, columns=2)
    colors = _colors(comparison.plans)
    monitored = comparison.plans[0].runs[0].summary.get("monitored", comparison.headline)
    drawn, labelled = False, set()
    for plan in comparison.largest:
        for run in plan.runs:
            records = run.curve()
            train = [(r["step"], r["loss"]) for r in records if r.get("kind") == "train" and "loss" in r]
            evals = [(r["step"], r[monitored]) for r in records if r.get("kind") == "eval" and monitored in r]
            label = None if plan.strategy in labelled else plan.strategy
            labelled.add(plan.strategy)
            if train:
                loss_axes.plot(*zip(*train), color=colors[plan.strategy], alpha=0.7, label=label)
                drawn = True
            if evals:
                eval_axes.plot(*zip(*evals), "o-", color=colors[plan.strategy], alpha=0.7, label=label)
                drawn = True
    if not drawn:
        return None
    loss_axes.set(xlabel="optimizer step", ylabel="training loss (lower is better)", title="training loss, every run")
    eval_axes.set_xlabel("optimizer step")
    name = monitored.replace("_", " ")
    if higher_is_better(monitored):
        eval_axes.set_ylabel(f"validation {name} (higher is better)")
    else:
        eval_axes.set_ylabel(f"validation {name} (lower is better; axis inverted)")
        eval_axes.invert_yaxis()
    eval_axes.set_title("validation metric at each evaluation, every run")
    for axes in (loss_axes, eval_axes):
        axes.grid(alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize=8, loc="best")
    return _save(figure, path)

