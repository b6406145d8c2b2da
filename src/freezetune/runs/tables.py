"""The tables a user reads: one run's summary line, and a sweep's plans side by side."""

from __future__ import annotations

from typing import Any

from freezetune.measure.metrics import format_table

RUN_COLUMNS = [
    ("strategy", "strategy", ""),
    ("accuracy", "{split} acc", ".3f"),
    ("macro_f1", "macro-F1", ".3f"),
    ("mcc", "MCC", ".3f"),
    ("trainable_params", "trainable", ","),
    ("trainable_pct", "%", ".2f"),
    ("time_per_epoch_s", "s/epoch", ".1f"),
    ("steady_step_s", "s/step", ".3f"),
    ("peak_mib", "peak MiB", ".0f"),
]


def run_table(row: dict[str, Any]) -> str:
    """One run's summary (``RunResult.summary()``) as a one-row table."""
    row = {**row, "peak_mib": row["peak_memory_bytes"] / 2**20}
    columns = [(k, h.format(split=row["reported_split"]), f) for k, h, f in RUN_COLUMNS]
    return format_table([row], columns)


COLUMNS = [
    ("strategy", "strategy", ""),
    ("accuracy_pm", "accuracy (mean ± std)", ""),
    ("macro_f1", "macro-F1", ".3f"),
    ("lr", "lr", ".0e"),
    ("retention_after", "retention", ".3f"),
    ("trainable_params", "trainable", ",.0f"),
    ("checkpoint_mib", "checkpoint MiB", ".2f"),
    ("train_time_s", "train s", ".1f"),
    ("steady_step_s", "s/step", ".3f"),
    ("peak_mib", "peak MiB", ".0f"),
]


def results_table(rows: list[dict[str, Any]]) -> str:
    """A sweep's rows (one per plan), the accuracy column named after the split it reports."""
    split = rows[0]["reported_split"] if rows else "test"
    rows = [{**r, "checkpoint_mib": r["checkpoint_bytes"] / 2**20} if r.get("checkpoint_bytes") is not None else r
            for r in rows]
    columns = [(k, h.replace("accuracy", f"{split} accuracy", 1) if k == "accuracy_pm" else h, f)
               for k, h, f in COLUMNS]
    if any("chosen" in r for r in rows):  # what a measuring strategy chose, per seed
        columns.insert(1, ("chosen", "chosen plan per seed", ""))
    return format_table(rows, columns)
