"""The sweep runner: several plans x seeds x learning rates on one data set, side by side.

Every run shares the same tokenized data and splits (loaded once, split with ``data_seed``);
seeds vary the head's initialisation, dropout and data order. Each run lives in
``OUTPUT/runs/<strategy>-<hash>/`` where the hash covers everything that decides its result,
so a finished run is found and skipped and an interrupted sweep simply continues.

Learning rates: fixed (``--lr``), the plan's default, or a grid (``--lr-grid auto`` = the
default x {1/3, 1, 3}; or explicit rates). The rate is chosen per plan on the *validation*
metric (mean over seeds); the reported numbers come from the test data when given. The test
data never takes part in any choice.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import statistics
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from freezetune.core.config import NOT_TRAINING
from freezetune.core.errors import FreezetuneError
from freezetune.core.layout import LayerMap
from freezetune.core.model import load_tokenizer
from freezetune.core.plan import Plan
from freezetune.io.rundir import RunDir, read_metrics
from freezetune.measure.costs import waited_s
from freezetune.runs.eval_sets import complete_finished
from freezetune.runs.loading import load_data, load_model, make_task
from freezetune.runs.paths import PATH_OPTIONS
from freezetune.runs.preflight import check_inputs
from freezetune.runs.run import Retention, RunCaches, resolve_for_run, run_training
from freezetune.runs.spec import RunSpec
from freezetune.runs.tables import results_columns, results_table
from freezetune.scoring.resolve import Resolution, resolve_strategy
from freezetune.scoring.select import compact
from freezetune.strategies.lr_policy import default_lr
from freezetune.strategies.registry import needs_context
from freezetune.strategies.schedules import Schedule, rate_plan
from freezetune.tasks.task import monitored_metric
from freezetune.training.distributed import ranks

log = logging.getLogger("freezetune")

AUTO_GRID = (1 / 3, 1.0, 3.0)
_DEFAULTS = RunSpec()  # an option at its default value stays out of a run's hash


@dataclass
class Sweep:
    strategies: list[str]
    base: RunSpec = field(default_factory=RunSpec)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    lr_grid: str | None = None  # None | "auto" | "1e-4,3e-4"
    data_seed: int = 0
    output: str = "runs/compare"
    overwrite: bool = False
    runs: str | None = None  # where runs live (default OUTPUT/runs); sweeps may share one store


def parse_grid(text: str | None) -> tuple[float, ...] | None:
    if text is None or text == "auto":
        return None
    try:
        rates = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise FreezetuneError(f"--lr-grid takes 'auto' or rates like 1e-4,3e-4; got {text!r}") from None
    if not rates or any(rate <= 0 for rate in rates):
        raise FreezetuneError(f"--lr-grid needs positive rates, got {text!r}")
    return rates


def run_hash(spec: RunSpec) -> str:
    """A hash of everything that decides a run's result.

    Options at their default value are left out, so a new option (at its default) keeps every
    earlier hash. Paths enter it relative to the working folder, as users and the benchmarks
    name them (config.yaml saves them absolute): a store keeps its hashes on any checkout.
    """
    defaults = _DEFAULTS.flat()
    flat = {k: v for k, v in spec.flat().items()
            if k not in NOT_TRAINING and (k == "strategy" or k not in defaults or v != defaults[k])}
    flat.update({k: _relative(flat[k]) for k in PATH_OPTIONS if flat.get(k)})
    return hashlib.sha256(json.dumps(flat, sort_keys=True, default=str).encode()).hexdigest()[:10]


def _relative(path: str) -> str:
    return os.path.relpath(path) if os.path.isabs(path) else path


def run_folder(runs: str | Path, spec: RunSpec) -> Path:
    """Where a run with these settings lives in a run store: found again by the same settings."""
    return Path(runs) / f"{spec.strategy.replace(':', '_')}-{run_hash(spec)}"


def _learning_rates(sweep: Sweep, strategy: Plan | Schedule, layers) -> list[float]:
    default = default_lr(strategy if isinstance(strategy, Plan) else rate_plan(strategy), layers)
    if sweep.lr_grid is None:
        # The default is written out, so a run is the same run (same hash) whichever way its rate was asked for.
        return [sweep.base.train.lr or round(default, 8)]
    fixed = parse_grid(sweep.lr_grid)
    return list(fixed) if fixed else [round(default * f, 8) for f in AUTO_GRID]


def _stats(values: list[float]) -> tuple[float, float]:
    """Mean and standard deviation over seeds; the mean of integers (parameters, bytes) stays a whole number."""
    mean = statistics.fmean(values)
    if all(isinstance(v, int) for v in values):
        mean = round(mean)
    return mean, (statistics.stdev(values) if len(values) > 1 else 0.0)


def run_sweep(sweep: Sweep) -> list[dict[str, Any]]:
    """Train every (plan, lr, seed) not already finished; return one row per plan.

    A measuring strategy (``auto``) is scored once per seed, on that seed's sample and a model
    with that seed's head, exactly as a lone run would; the plan it chose sets the seed's rates
    and is the plan every run of that seed trains.
    """
    base = sweep.base.resolved()
    check_inputs(sweep.strategies, base, sweep.output)
    if len(set(sweep.strategies)) != len(sweep.strategies):
        raise FreezetuneError("the same --strategy is listed twice")
    parse_grid(sweep.lr_grid)
    if ranks().world > 1:  # ranks would each decide which runs are finished, and disagree
        raise FreezetuneError("freezetune compare runs in one process; launch freezetune train with torchrun or "
                              "accelerate launch to train one plan data-parallel")
    out = Path(sweep.output)
    if out.is_file():
        raise FreezetuneError(f"{out} is a file; --output must be a folder")
    tokenizer = load_tokenizer(base.model.model, gguf_file=base.model.gguf_file,
                               trust_remote_code=base.model.trust_remote_code)
    data = load_data(replace(base, train=replace(base.train, seed=sweep.data_seed)), tokenizer)
    task = make_task(base, data)
    base = replace(base, train=replace(base.train, metric=monitored_metric(task, base.train.metric)))
    caches = RunCaches()  # every run of this sweep reuses the same prefix caches and retention scores

    probe = load_model(base, task)
    layers = LayerMap.from_model(probe)

    def resolution(strategy: str, seed: int) -> Resolution:
        if not needs_context(strategy):
            return resolve_strategy(strategy, probe)
        spec = replace(base, strategy=strategy, train=replace(base.train, seed=seed))
        model = load_model(spec, task)
        measures = spec.data.retention != "none"
        retention = Retention(spec, model, tokenizer, caches.retention_before) if measures else None
        return resolve_for_run(spec, model, task, data, tokenizer, caches, retention)

    # Everything is resolved before the first run, so a bad block range fails early.
    plans = {(s, seed): resolution(s, seed) for s in sweep.strategies for seed in sweep.seeds}
    rates = {key: _learning_rates(sweep, r.strategy, layers) for key, r in plans.items()}
    total = sum(len(r) for r in rates.values())
    done = 0
    rows = []
    for strategy in sweep.strategies:
        by_step: dict[int, list[dict[str, Any]]] = {}
        for seed in sweep.seeds:
            key = (strategy, seed)
            for step, lr in enumerate(rates[key]):
                spec = replace(base, strategy=strategy, train=replace(base.train, seed=seed, lr=lr))
                folder = run_folder(sweep.runs or out / "runs", spec)
                done += 1
                summary = _finished(folder)
                if summary is None or sweep.overwrite:
                    log.info("[%d/%d] %s lr=%s seed=%d", done, total, strategy, lr, seed)
                    spec = replace(spec, output=str(folder), overwrite=True)
                    result = run_training(spec, data=data, tokenizer=tokenizer, caches=caches,
                                          resolution=plans[key].fresh())
                    summary = _summary(result)
                else:
                    log.info("[%d/%d] %s lr=%s seed=%d: already done", done, total, strategy, lr, seed)
                    summary = complete_finished(folder, summary, data.eval_sets, spec, task,
                                                tokenizer.pad_token_id or 0)
                by_step.setdefault(step, []).append({**summary, "folder": str(folder)})
        row = _aggregate(strategy, by_step, task)
        if needs_context(strategy):  # say what the measuring strategy chose, seed by seed, and why
            row["chosen"] = " / ".join(_blocks(plans[(strategy, seed)].strategy) for seed in sweep.seeds)
            row["selections"] = {seed: "\n".join(s["explanation"] for s in plans[(strategy, seed)].selections)
                                 for seed in sweep.seeds}
        rows.append(row)
    write_results(out, rows, sweep)
    return rows


def _blocks(plan: Plan | Schedule) -> str:
    """A chosen plan in a table cell: the blocks that train ("blocks 3-5"), LoRA ("LoRA r=8, blocks 0-5"),
    or the schedule."""
    if not isinstance(plan, Plan):
        return getattr(plan, "spec", type(plan).__name__)
    if plan.lora is not None:
        return f"LoRA r={plan.lora.r}, blocks {compact(plan.lora.blocks) if plan.lora.blocks else 'all'}"
    return f"blocks {compact(plan.blocks)}" + (" + embeddings" if plan.embeddings else "")


def _summary(result) -> dict[str, Any]:
    metric = result.spec.train.metric
    return {**result.summary(), "validation_score": result.validation[metric]}


def _finished(folder: Path) -> dict[str, Any] | None:
    saved = read_metrics(folder)
    if saved is None:
        return None  # not finished, or unreadable (written by hand, or by a much older version): train it again
    metric = saved["summary"].get("monitored", "accuracy")  # runs saved before the key existed monitored accuracy
    return {**saved["summary"], "monitored": metric, "validation_score": saved["validation"][metric]}


def _aggregate(strategy: str, by_step: dict[int, list[dict[str, Any]]], task) -> dict[str, Any]:
    """Pick the grid step by the mean validation score of the monitored metric; report its numbers over seeds.

    Steps, not rates, are compared: an `auto` plan may choose another plan (so another default
    rate) for each seed, and its seeds' runs at "default x 3" belong together.
    """
    sign = 1 if task.directions.get(next(iter(by_step.values()))[0]["monitored"], "max") == "max" else -1
    best = max(by_step, key=lambda step: sign * statistics.fmean(r["validation_score"] for r in by_step[step]))
    runs = by_step[best]
    row: dict[str, Any] = {"strategy": strategy, "lr": statistics.median(r["lr"] for r in runs), "seeds": len(runs),
                           "lrs_tried": sorted({r["lr"] for step in by_step.values() for r in step}),
                           "reported_split": runs[0]["reported_split"], "headline": task.summary_metrics[0],
                           "run_folders": [r["folder"] for r in runs]}  # the report reads each run's curves
    for key in (*task.summary_metrics, "validation_score"):
        if all(key in r for r in runs):
            row[key], row[f"{key}_std"] = _stats([r[key] for r in runs])
    row["eval_sets"] = _eval_sets(runs, task.summary_metrics)
    for key in ("train_time_s", "time_per_epoch_s", "steady_step_s", "peak_memory_bytes"):
        row[key] = _stats([r[key] for r in runs if r.get(key) is not None])[0]
    for key in ("cache_build_s", "scoring_s"):  # the parts of the time waited that a plan may not have
        row[key] = statistics.fmean(r.get(key) or 0.0 for r in runs)
    row["total_time_s"] = statistics.fmean(waited_s(r) for r in runs)
    for key in ("trainable_params", "trainable_pct", "checkpoint_bytes", "retention_after", "retention_change"):
        values = [r[key] for r in runs if r.get(key) is not None]
        if values:
            row[key], row[f"{key}_std"] = _stats(values)
    headline = row["headline"]
    row["headline_pm"] = f"{row[headline]:.3f} ± {row[f'{headline}_std']:.3f}"
    row["peak_mib"] = row["peak_memory_bytes"] / 2**20
    return row


def _eval_sets(runs: list[dict[str, Any]], metrics: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """name -> {kind, metric: mean over seeds, metric_std: their std} for each of the task's summary metrics."""
    out = {}
    for name, first in runs[0].get("eval_sets", {}).items():
        out[name] = {"kind": first["kind"]}
        for key in metrics:
            if all(key in r["eval_sets"][name] for r in runs):
                out[name][key], out[name][f"{key}_std"] = _stats([r["eval_sets"][name][key] for r in runs])
    return out


def write_results(out: Path, rows: list[dict[str, Any]], sweep: Sweep) -> None:
    run_dir = RunDir(out)
    table = results_table(rows)
    if rows and rows[0]["reported_split"] == "validation":
        table += "\nnote: no --test-data, so these are validation numbers (also used to pick rates): optimistic"
    for row in rows:
        for seed, why in row.get("selections", {}).items():
            table += f"\n\n{row['strategy']}, seed {seed}:\n{why}"
    run_dir.write_text("results.txt", table + "\n")
    run_dir.write_json("results.json", {"rows": rows, "sweep": {**asdict(sweep), "base": sweep.base.flat()}})
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=_csv_columns(rows))
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in row.items()})
    run_dir.write_text("results.csv", buffer.getvalue())


def _csv_columns(rows: list[dict[str, Any]]) -> list[str]:
    """results.csv's columns: the results table's, each followed by its mean and std, then every other key."""
    order = []
    for key, _, _ in results_columns(rows):
        if key == "headline_pm":  # the table's "mean ± std" text: the numbers behind it come first
            order += [rows[0]["headline"], f"{rows[0]['headline']}_std"] if rows else []
        order += [key, f"{key}_std"]
    present = {k for row in rows for k in row}
    order = [k for k in dict.fromkeys(order) if k in present]
    return order + sorted(present - set(order))
