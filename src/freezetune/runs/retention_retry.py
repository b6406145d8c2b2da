"""A retention floor that broke early: train again one block deeper and keep the better run.

The guard (``scoring/retention_guard.py``) keeps a run's best evaluation above the floor and ends
the run at the first evaluation below it. When that happens the plan forgets too fast for this
data, and its early evaluation is often worse than a plan with one more block frozen trained longer
(SST-2, 1,000 rows, floor 80 %: ``depth:0`` stopped after its first epoch scores 0.790 on test,
``depth:1`` 0.813). So the run trains once more from the base model with the next deeper frozen
prefix, under the same floor, and keeps:

- the attempt whose kept evaluation holds the floor, over one whose does not;
- else the deeper attempt, unless the shallower is better on validation by more than the
  validation's sampling error (``measure.metrics.sampling_error``: 2.2 points of accuracy on 500
  rows). Within that error the validation rows cannot tell the two plans apart, while the deeper
  one keeps more of the skill the floor protects. (Measured: on SST-2 the early-stopped
  ``depth:0`` led by 0.2–0.6 points of validation in 2 of 3 seeds and trailed by 2–3 on test.)

One retry is made when the first attempt held the floor for a while; the run deepens further only
while the kept attempt cannot hold the floor even at its first evaluation. Each retry costs a run of
the deeper plan (cheaper than the first: fewer blocks train, and the frozen prefix is cached). Its
time is added to the run's training time, and ``metrics.json`` → ``costs.retention_retries`` lists
every attempt. The run folder's ``metrics.jsonl`` holds the kept attempt's records. Retries keep no
resumable state: an interrupted retry starts over when the run resumes. Plans other than a frozen
prefix (LoRA, tensor lists) are not deepened.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from freezetune.core.layout import LayerMap
from freezetune.core.plan import Plan
from freezetune.io.rundir import RunDir
from freezetune.measure.metrics import is_better, sampling_error
from freezetune.measure.units import format_duration
from freezetune.runs.listeners import MetricsLogger
from freezetune.runs.loading import load_model, seed_everything
from freezetune.runs.progress_log import ProgressLog
from freezetune.scoring.resolve import callbacks_for
from freezetune.strategies.registry import resolve
from freezetune.training.finetuner import Finetuner
from freezetune.training.state import FitResult

log = logging.getLogger("freezetune")


def floor_broke(fit: FitResult) -> bool:
    """Whether a retention guard ended this fit early (an evaluation fell below its floor)."""
    guard = fit.costs.get("retention_guard")
    return bool(guard) and any(e["kept"] < guard["floor"] for e in guard["evaluations"])


def deeper(plan: Plan, layers: LayerMap) -> Plan | None:
    """The same floor on one more frozen block, or None (head only already, or not a frozen-prefix plan)."""
    trained = plan.trainable_blocks(layers.num_blocks)
    if plan.lora is not None or plan.tensors or not trained or list(trained) != list(range(trained[0],
                                                                                              layers.num_blocks)):
        return None
    depth = trained[0] + 1
    return replace(resolve(f"depth:{depth}", layers), retention_floor=plan.retention_floor, spec=f"depth:{depth}")


class _Records:
    """Stands in for the run folder: holds a retry's metrics.jsonl records until it is kept."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def append_metrics(self, record: dict[str, Any]) -> None:
        self.lines.append(json.dumps(record, default=str))


def deepen_while_forgetting(tuner: Finetuner, fit: FitResult, data, *, fresh_model: Callable[[], Any],
                            measure: Callable[[Any], float], run_dir: RunDir | None,
                            ) -> tuple[Finetuner, FitResult, list[dict[str, Any]]]:
    """Retry one block deeper while the floor broke early and the retry does better; the kept tuner and fit."""
    attempts: list[dict[str, Any]] = []
    metric, directions = tuner.config.metric, tuner.task.directions
    current, current_fit = tuner, fit
    # one retry when the floor broke; more only while the kept attempt holds it nowhere
    while (floor_broke(current_fit) and (not attempts or not _holds(current_fit, current.plan.retention_floor))
           and (plan := deeper(current.plan, current.layers)) is not None):
        log.info("retention floor broke at step %d (frozen prefix %d): training %s from the base under the same "
                 "floor ...", current_fit.costs["retention_guard"]["evaluations"][-1]["step"],
                 current.frozen_prefix_depth(), plan.spec)
        records = _Records()
        current.optimizer = None  # its moments (twice its trained weights) are never used again: free them first
        retry = Finetuner(fresh_model(), plan, config=tuner.config, task=tuner.task, pad_token_id=tuner.pad_token_id,
                          tokenizer_name=tuner.tokenizer_name, cache_store=tuner.cache_store,
                          callbacks=[*callbacks_for(plan, measure), ProgressLog(), MetricsLogger(records)])
        retry_fit = retry.fit(data.train, data.validation)
        holds, held = _holds(retry_fit, plan.retention_floor), _holds(current_fit, plan.retention_floor)
        better = prefer_deeper(retry_fit, current_fit, plan.retention_floor, metric, directions)
        attempts.append(_attempt(current, current_fit, kept=not better))
        log.info("%s: validation %s %.4f (floor %s) against %.4f (floor %s) one block shallower (%s): keeping %s",
                 plan.spec, metric, retry_fit.best_metrics[metric], "held" if holds else "broke",
                 current_fit.best_metrics[metric], "held" if held else "broke",
                 format_duration(retry_fit.costs["train_time_s"]), "it" if better else "the shallower one")
        if not better:
            attempts.append(_attempt(retry, retry_fit, kept=False))
            break
        if run_dir is not None:
            run_dir.write_text("metrics.jsonl", "".join(line + "\n" for line in records.lines))
        current, current_fit = retry, retry_fit
    if attempts:
        if not any(a["kept"] for a in attempts):  # the last retry did better and is not recorded yet
            attempts.append(_attempt(current, current_fit, kept=True))
        spent = sum(a["train_time_s"] for a in attempts if not a["kept"])
        current_fit.costs["train_time_s"] += spent  # what the floor cost, counted where costs are compared
        current_fit.costs["retention_retries"] = attempts
    return current, current_fit, attempts


def retry_deeper(tuner: Finetuner, fit: FitResult, data, spec, task, measure: Callable[[Any], float],
                 run_dir: RunDir | None) -> tuple[Finetuner, FitResult, str | None]:
    """A run's retries (see the module doc): the kept tuner and fit, and the retries in words (None: none)."""

    def fresh_model():  # the base model with the run's seeded head, as the run started from
        seed_everything(spec.train.seed)
        return load_model(spec, task)

    tuner, fit, attempts = deepen_while_forgetting(tuner, fit, data, fresh_model=fresh_model, measure=measure,
                                                   run_dir=run_dir)
    margin = sampling_error(tuner.config.metric, fit.best_metrics.get("n"))
    return tuner, fit, explain_retries(attempts, tuner.config.metric, margin) if attempts else None


def prefer_deeper(deep: FitResult, shallow: FitResult, floor: float, metric: str, directions: dict[str, str]) -> bool:
    """Whether the deeper attempt is kept (see the module doc): it holds the floor where the shallower does
    not, or both do alike and the shallower is not better on validation beyond its sampling error."""
    holds, held = _holds(deep, floor), _holds(shallow, floor)
    if holds != held:
        return holds
    margin = sampling_error(metric, shallow.best_metrics.get("n"))
    ahead = shallow.best_metrics.get(metric)
    if ahead is None:
        return True
    ahead += -margin if directions[metric] == "max" else margin  # the shallower must win by more than this
    return not is_better(metric, ahead, deep.best_metrics.get(metric), directions)


def _holds(fit: FitResult, floor: float) -> bool:
    """Whether the evaluation a fit kept keeps the floor (only a first evaluation below it is ever kept)."""
    return fit.best_metrics.get("retention_kept", 1.0) >= floor


def _attempt(tuner: Finetuner, fit: FitResult, *, kept: bool) -> dict[str, Any]:
    metric = tuner.config.metric
    return {"plan": f"depth:{tuner.frozen_prefix_depth()}", "spec": tuner.plan.spec,
            "validation": fit.best_metrics.get(metric), "best_step": fit.best_step, "steps": fit.costs.get("steps"),
            "train_time_s": fit.costs["train_time_s"], "floor_broke": floor_broke(fit), "kept": kept}


def explain_retries(attempts: list[dict[str, Any]], metric: str, margin: float) -> str:
    """The retries in words, for selection.txt."""
    lines = ["The retention floor broke before the end of training, so the run trained again one block deeper:"]
    for a in attempts:
        lines.append(f"  {a['plan']:<10} validation {metric} {a['validation']:.4f} at step {a['best_step']} of "
                     f"{a['steps']} ({format_duration(a['train_time_s'])}; floor "
                     f"{'broke' if a['floor_broke'] else 'held'}){'   <- kept' if a['kept'] else ''}")
    lines.append(f"Kept: an attempt that holds the floor at its kept evaluation over one that does not; between "
                 f"two alike, the deeper (it keeps more skill) unless the shallower leads on validation by more "
                 f"than {margin:.4f}, the validation's sampling error.")
    return "\n".join(lines)
