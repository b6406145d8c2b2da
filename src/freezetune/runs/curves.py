"""curves.png: how a run trained, read from its metrics.jsonl.

Top panel: the training loss over optimizer steps, with the validation loss at each evaluation.
Bottom panel: the other validation metrics over steps (accuracy, macro-F1, MCC; token accuracy,
exact match), all on one 0..1 scale. Perplexity is exp(loss), already shown above, so it is
drawn only when the task has no other metric.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from freezetune.core.figures import new_figure, save_png
from freezetune.io.rundir import read_metrics_log
from freezetune.measure.metrics import scalar_metrics

FILE = "curves.png"
_LOSS_LIKE = ("loss", "perplexity")


def write_curves(run_folder: Path) -> Path | None:
    """Draw RUN/curves.png from RUN/metrics.jsonl and return its path; None when there is nothing to plot."""
    run_folder = Path(run_folder)
    records = read_metrics_log(run_folder)
    train = [r for r in records if r.get("kind") == "train" and "loss" in r]
    evals = [r for r in records if r.get("kind") == "eval"]
    if not train and not evals:
        return None
    return save_png(curves_figure(train, evals), run_folder / FILE)


def curves_figure(train: list[dict[str, Any]], evals: list[dict[str, Any]]):
    """The two-panel figure of ``train`` (step records) and ``evals`` (evaluation records)."""
    figure = new_figure(7.0, 6.0)
    loss_axes, metric_axes = figure.subplots(2, 1, sharex=True)
    if train:
        loss_axes.plot([r["step"] for r in train], [r["loss"] for r in train], label="training loss (batch)",
                       color="tab:blue", linewidth=1)
    with_loss = [r for r in evals if "loss" in r]
    if with_loss:
        loss_axes.plot([r["step"] for r in with_loss], [r["loss"] for r in with_loss], label="validation loss",
                       color="tab:orange", marker="o")
    loss_axes.set(ylabel="loss (cross-entropy, nats)", title="training and validation loss")
    loss_axes.legend()

    names = list(dict.fromkeys(k for r in evals for k in scalar_metrics(r) if k not in _LOSS_LIKE))
    if not names and any("perplexity" in r for r in evals):
        names, ylabel = ["perplexity"], "perplexity"
    else:
        ylabel = "score (1 = perfect)"
    for name in names:
        points = [r for r in evals if name in r]
        metric_axes.plot([r["step"] for r in points], [r[name] for r in points], marker="o", label=name)
    metric_axes.set(xlabel="optimizer step", ylabel=ylabel, title="validation metrics")
    if names:
        metric_axes.legend()
    else:
        metric_axes.text(0.5, 0.5, "no evaluation", ha="center", va="center", transform=metric_axes.transAxes)
    figure.tight_layout()
    return figure
