"""The tables a user reads: one run's summary line, and a sweep's plans side by side."""

from __future__ import annotations

from typing import Any

from freezetune.measure.metrics import format_table

# How each task metric is headed in a table; the first of a run's metrics is named after its split.
METRIC_HEADERS = {"accuracy": "acc", "macro_f1": "macro-F1", "mcc": "MCC", "exact_match": "exact match",
                  "perplexity": "perplexity", "loss": "loss", "token_accuracy": "token acc"}
RUN_COLUMNS = [
    ("trainable_params", "trainable", "count"),
    ("trainable_pct", "%", ".2f"),
    ("time_per_epoch_s", "time/epoch", "duration"),
    ("steady_step_s", "step", "duration"),
    ("peak_memory_bytes", "peak memory", "bytes"),
]


def run_table(row: dict[str, Any]) -> str:
    """One run's summary (``RunResult.summary()``) as a one-row table."""
    metrics = [k for k in METRIC_HEADERS if k in row]
    if "accuracy" in metrics:  # classification: its three metrics, in their usual order
        metrics = ["accuracy", "macro_f1", "mcc"]
    heads = [(k, METRIC_HEADERS[k], ".3f") for k in metrics]
    heads[0] = (heads[0][0], f"{row['reported_split']} {heads[0][1]}", ".3f")
    (row,), sets = _eval_set_cells([row], metrics[0], spread=False)
    return format_table([row], [("strategy", "strategy", ""), *heads, *sets, *RUN_COLUMNS])


def _eval_set_cells(rows: list[dict[str, Any]], metric: str, spread: bool) -> tuple[list[dict], list[tuple]]:
    """The rows with one cell per evaluation set (its ``metric``; ``spread``: mean ± std over seeds), and the
    columns that show them, headed like ``reviews (OOD) acc``."""
    rows = [dict(r) for r in rows]
    columns = []
    for name, first in {n: s for r in rows for n, s in r.get("eval_sets", {}).items()}.items():
        key = f"eval_set/{name}"
        for row in rows:
            scores = row.get("eval_sets", {}).get(name, {})
            if metric in scores:
                row[key] = f"{scores[metric]:.3f} ± {scores[f'{metric}_std']:.3f}" if spread else scores[metric]
        marker = " (OOD)" if first["kind"] == "ood" else ""
        columns.append((key, f"{name}{marker} {METRIC_HEADERS.get(metric, metric)}", "" if spread else ".3f"))
    return rows, columns


COLUMNS = [
    ("strategy", "strategy", ""),
    ("headline_pm", "{headline} (mean ± std)", ""),
    ("macro_f1", "macro-F1", ".3f"),
    ("perplexity", "perplexity", ".2f"),
    ("lr", "lr", ".0e"),
    ("retention_after", "retention", ".3f"),
    ("trainable_params", "trainable", "count"),
    ("checkpoint_bytes", "checkpoint", "bytes"),
    ("total_time_s", "time waited", "duration"),  # training + cache build + scoring
    ("train_time_s", "train", "duration"),
    ("cache_build_s", "cache build", "duration"),
    ("scoring_s", "scoring", "duration"),
    ("steady_step_s", "step", "duration"),
    ("peak_memory_bytes", "peak memory", "bytes"),
]


def results_table(rows: list[dict[str, Any]]) -> str:
    """A sweep's rows (one per plan), the accuracy column named after the split it reports."""
    return format_table(*_results_cells(rows))


def results_columns(rows: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """The columns of ``results_table`` for these rows: ``(key, header, format)``; results.csv follows their order."""
    return _results_cells(rows)[1]


def _results_cells(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[tuple[str, str, str]]]:
    split = rows[0]["reported_split"] if rows else "test"
    headline = rows[0].get("headline", "accuracy").replace("_", " ") if rows else "accuracy"
    columns = [(k, h.format(headline=f"{split} {headline}"), f) for k, h, f in COLUMNS]
    # A task's second metric (classification: macro-F1, causal LM: perplexity) only where it was measured.
    headline_key = rows[0].get("headline") if rows else None  # already shown as the mean ± std column
    columns = [c for c in columns
               if c[0] != headline_key and (c[0] not in METRIC_HEADERS or any(c[0] in r for r in rows))]
    if any("train_size" in r for r in rows):  # a learning curve: one row per plan and training size
        rows = [{**r, "train_size": r["train_size"] or "all"} for r in rows]
        columns.insert(1, ("train_size", "rows", ""))
    if any("chosen" in r for r in rows):  # what a measuring strategy chose, per seed
        columns.insert(1, ("chosen", "chosen plan per seed", ""))
    rows, sets = _eval_set_cells(rows, headline_key or "accuracy", spread=True)
    at = next(i for i, c in enumerate(columns) if c[0] == "lr")  # after the task's metrics
    return rows, [*columns[:at], *sets, *columns[at:]]
