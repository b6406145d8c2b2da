"""Classification metrics, which way each metric improves, and plain-text comparison tables.

Metrics come from scikit-learn (the `evaluate` package downloads metric code and fails
offline). Every number returned is a plain Python float or int so results can go straight
into JSON.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from sklearn.metrics import (
    accuracy_score,
    matthews_corrcoef,
    precision_recall_fscore_support,
)

from freezetune.core.errors import FreezetuneError
from freezetune.measure.units import UNIT_FORMATS

# "max": bigger is better; "min": smaller is better. Early stopping and best-checkpoint
# selection look metrics up here, so a new metric must be added before it can be monitored.
METRIC_DIRECTIONS: dict[str, str] = {
    "accuracy": "max",
    "macro_f1": "max",
    "mcc": "max",
    "loss": "min",
}


def classification_metrics(
    y_true: Sequence[int], y_pred: Sequence[int], label_names: list[str]
) -> dict[str, Any]:
    """Accuracy, macro F1, Matthews correlation and per-class scores for label ids.

    Labels are ids ``0 .. len(label_names) - 1``. Every class gets a ``per_class`` entry
    even when it is absent from this split (its scores are 0, support 0), so reports from
    different splits have the same shape. ``macro_f1`` averages over the classes that occur
    in ``y_true`` or ``y_pred``: a class that is in neither (a rare class missing from a
    small validation slice) has an undefined F1, and counting it as 0 would punish the
    model for the data split, not for its predictions.

    Returns ``{"accuracy", "macro_f1", "mcc", "n", "per_class": {name: {precision, recall,
    f1, support}}}``.
    """
    y_true = [int(y) for y in y_true]
    y_pred = [int(y) for y in y_pred]
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} labels but y_pred has {len(y_pred)}")
    if not y_true:
        raise FreezetuneError(
            "no examples to evaluate; check that the evaluation split is not empty"
        )
    n_classes = len(label_names)
    out_of_range = sorted({y for y in y_true + y_pred if not 0 <= y < n_classes})
    if out_of_range:
        raise ValueError(
            f"label ids {out_of_range} are outside 0..{n_classes - 1} ({n_classes} label names)"
        )

    # labels= fixes the class list so absent classes give zeros instead of shape errors;
    # zero_division=0 turns 0/0 precision or recall into 0 without a warning.
    labels = list(range(n_classes))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    present = set(y_true) | set(y_pred)
    macro_f1 = sum(float(f1[c]) for c in present) / len(present)

    per_class = {
        name: {
            "precision": float(precision[c]),
            "recall": float(recall[c]),
            "f1": float(f1[c]),
            "support": int(support[c]),
        }
        for c, name in enumerate(label_names)
    }
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": macro_f1,
        # sklearn returns 0.0 when MCC is undefined (e.g. a constant prediction).
        "mcc": float(matthews_corrcoef(y_true, y_pred)),
        "n": len(y_true),
        "per_class": per_class,
    }


def is_better(metric: str, new: float, old: float | None, directions: dict[str, str] = METRIC_DIRECTIONS) -> bool:
    """True when ``new`` is strictly better than ``old`` for ``metric``.

    ``old`` is None before the first evaluation, so anything (except NaN) beats it. A NaN
    ``new`` (a diverged loss) is never better, so it can't become the best checkpoint.
    """
    try:
        direction = directions[metric]
    except KeyError:
        known = ", ".join(sorted(directions))
        raise FreezetuneError(
            f"unknown metric {metric!r} to monitor; choose one of: {known}"
        ) from None
    if new is None or math.isnan(new):
        return False
    if old is None or math.isnan(old):
        return True
    return new > old if direction == "max" else new < old


# The widest sampling error of a metric measured on n rows is SPREAD / sqrt(n): a proportion's standard
# error is at most 0.5 / sqrt(n) (at 50 %), a correlation's at most 1 / sqrt(n). Losses have no such bound.
_SAMPLING_SPREAD = {"accuracy": 0.5, "macro_f1": 0.5, "token_accuracy": 0.5, "exact_match": 0.5, "mcc": 1.0}


def sampling_error(metric: str, n: int | None) -> float:
    """The widest standard error of ``metric`` on ``n`` rows (0 when it has no bound or ``n`` is unknown).

    Two models whose scores on the same rows differ by less than this are not told apart by them.
    """
    spread = _SAMPLING_SPREAD.get(metric)
    return spread / math.sqrt(n) if spread is not None and n else 0.0


def nothing_learned(value: float, baseline: float, metric: str, n: int | None, spread: float = 0.0,
                    larger_is_better: bool = True) -> bool:
    """Whether ``value`` is no better than ``baseline`` (the majority class) beyond the noise of ``n`` rows.

    The noise is the larger of the metric's sampling error on those rows and the seed ``spread``: a
    score inside it could come from predicting the majority class on every row.
    """
    gain = value - baseline if larger_is_better else baseline - value
    return gain <= max(sampling_error(metric, n), spread)


def scalar_metrics(record: dict[str, Any], names: Iterable[str] | None = None) -> dict[str, float]:
    """The metrics of an evaluation record (those in ``names`` when given), in its order.

    Metrics are floats; the integers beside them are bookkeeping (step, epoch, example and token
    counts), and so is ``time`` in metrics.jsonl.
    """
    keep = set(names) if names is not None else None
    return {k: v for k, v in record.items()
            if isinstance(v, float) and k != "time" and (keep is None or k in keep)}


def format_table(rows: list[dict[str, Any]], columns: list[tuple[str, str, str]]) -> str:
    """Render ``rows`` as an aligned plain-text table for the terminal.

    ``columns`` lists ``(key, header, format_spec)``; the spec is passed to ``format()``
    (".3f", ",", "" ...), or names a unit: "bytes" (MiB / GiB), "duration" (s / min), "count"
    (a whole number with separators; see units.py). Missing or None values print as "-". Numeric columns are
    right-aligned so digits line up; text columns are left-aligned.
    """
    cells: list[list[str]] = []
    for row in rows:
        cells.append([_format_cell(row.get(key), spec) for key, _, spec in columns])

    headers = [header for _, header, _ in columns]
    widths = [
        max([len(headers[i])] + [len(r[i]) for r in cells]) for i in range(len(columns))
    ]
    numeric = [
        any(_is_number(row.get(key)) for row in rows)
        and all(row.get(key) is None or _is_number(row.get(key)) for row in rows)
        for key, _, _ in columns
    ]

    def line(values: list[str]) -> str:
        parts = [
            v.rjust(w) if is_num else v.ljust(w)
            for v, w, is_num in zip(values, widths, numeric)
        ]
        return "  ".join(parts).rstrip()

    out = [line(headers), line(["-" * w for w in widths])]
    out.extend(line(r) for r in cells)
    return "\n".join(out)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _format_cell(value: Any, spec: str) -> str:
    if value is None:
        return "-"
    try:
        if spec in UNIT_FORMATS:
            return UNIT_FORMATS[spec](value)
        return format(value, spec)
    except (TypeError, ValueError):
        # A spec like ".3f" on a text value (e.g. "n/a" from a failed arm): show it as is
        # rather than failing to print the whole table.
        return str(value)
