"""Read a finished comparison back: its rows (results.json) and every run they name.

The report works from what the runs wrote (each run's metrics.json, config.yaml and
metrics.jsonl), not from the table, so seed spreads, paired differences and curves come from
the runs themselves and ``freezetune report`` can rebuild everything without training.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from freezetune.core.errors import FreezetuneError
from freezetune.io.rundir import read_metrics, read_metrics_log


@dataclass
class Run:
    """One finished run of a plan at one seed (and one training size)."""

    strategy: str
    seed: int
    folder: Path
    train_rows: int
    reported: dict[str, Any]  # the reported split's metrics (test, or validation when there is no test data)
    costs: dict[str, Any]
    summary: dict[str, Any]
    eval_sets: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {"kind": "ood"|"extra", metrics}
    baseline: dict[str, Any] = field(default_factory=dict)  # the majority class's metrics on the reported split

    def curve(self) -> list[dict[str, Any]]:
        """The run's metrics.jsonl records (training steps and evaluations)."""
        return read_metrics_log(self.folder)


@dataclass
class Plan:
    """One row of the comparison: a strategy at one training size, with its runs (one per seed)."""

    strategy: str
    train_size: int | None  # the --train-sizes entry (None: all rows)
    row: dict[str, Any]
    runs: list[Run]

    @property
    def train_rows(self) -> int:
        """Training rows of its runs (a run restored from a bare summary lacks them: the size asked for)."""
        return max((r.train_rows for r in self.runs), default=0) or self.train_size or 0

    @property
    def chosen(self) -> str | None:
        return self.row.get("chosen")


@dataclass
class Comparison:
    folder: Path
    plans: list[Plan]
    headline: str  # the task's headline metric (accuracy, exact_match, perplexity, ...)
    split: str  # "test" or "validation"
    task: str
    settings: dict[str, Any]

    @property
    def sizes(self) -> list[int]:
        """The training sizes compared, as actual training rows, smallest first."""
        return sorted({p.train_rows for p in self.plans})

    def at(self, train_rows: int) -> list[Plan]:
        return [p for p in self.plans if p.train_rows == train_rows]

    @property
    def largest(self) -> list[Plan]:
        """The plans at the largest training size: the user's own setting."""
        return self.at(self.sizes[-1])


def load_comparison(folder: str | Path) -> Comparison:
    """The comparison in ``folder`` (written by ``freezetune compare``), with every run it reports."""
    folder = Path(folder)
    results = folder / "results.json"
    if not results.is_file():
        raise FreezetuneError(f"{folder} holds no results.json; run `freezetune compare --output {folder}` first")
    try:
        saved = json.loads(results.read_text())
    except json.JSONDecodeError:
        raise FreezetuneError(f"{results} is not valid JSON; run the comparison again") from None
    rows = saved.get("rows") or []
    if not rows:
        raise FreezetuneError(f"{results} lists no plans; run the comparison again")
    plans = [Plan(r["strategy"], r.get("train_size"), r,
                  [run for f in r.get("run_folders", []) if (run := _load_run(Path(f))) is not None])
             for r in rows]
    plans = [p for p in plans if p.runs]
    if not plans:
        raise FreezetuneError(f"the runs listed in {results} are gone; run the comparison again")
    first = plans[0].runs[0]
    return Comparison(folder=folder, plans=plans, headline=rows[0].get("headline", "accuracy"),
                      split=rows[0].get("reported_split", "test"), task=first.summary.get("task", "classification"),
                      settings=saved.get("sweep", {}))


def _load_run(folder: Path) -> Run | None:
    """A finished run; None when it is gone or did not finish (the report leaves it out)."""
    metrics = read_metrics(folder)
    if metrics is None:
        return None
    try:
        config_file = folder / "config.yaml"
        config = (yaml.safe_load(config_file.read_text()) if config_file.is_file() else None) or {}
        reported = metrics["test"] if metrics.get("reported_split") == "test" else metrics["validation"]
        strategy = metrics["summary"]["strategy"]
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError):
        return None
    return Run(strategy=strategy, seed=int(config.get("seed", 0)), folder=folder,
               train_rows=int(metrics.get("data", {}).get("train_rows", 0)), reported=reported,
               costs=metrics.get("costs", {}), summary=metrics["summary"], eval_sets=metrics.get("eval_sets") or {},
               baseline=metrics.get("data", {}).get("baseline") or {})
