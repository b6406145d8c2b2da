"""Scoring the evaluation sets of ``--extra-eval`` and ``--ood-set`` on a trained model.

Each set is scored once, after training, on the weights the run keeps (the best evaluation's
with ``--keep-best``): the numbers describe the model the checkpoint holds. Not at every
evaluation: that would add a forward pass over every set to each evaluation, inside the
training time a run reports, and a set added to a finished sweep later can only be scored on
the kept checkpoint anyway. So a fresh run and a reused one report the same thing. No set ever
takes part in model selection; validation stays ``--eval-data``'s job.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from freezetune.core.errors import FreezetuneError
from freezetune.core.plan import Plan
from freezetune.io.checkpoint import load_checkpoint
from freezetune.io.data import EvalSet
from freezetune.io.rundir import RunDir, read_metrics
from freezetune.runs.paths import absolute
from freezetune.training.finetuner import Finetuner

log = logging.getLogger("freezetune")


def score_eval_sets(tuner: Finetuner, sets: dict[str, EvalSet], run_dir: RunDir | None,
                    step: int) -> dict[str, dict[str, Any]]:
    """name -> {kind, rows, path, truncated, dropped, <the task's metrics>}; one ``eval_set`` record per set in
    metrics.jsonl, ``step`` naming the weights scored."""
    scores = {}
    for name, eval_set in sets.items():
        metrics = tuner.evaluate(eval_set.dataset)
        scores[name] = {"kind": eval_set.kind, "rows": len(eval_set.dataset), "path": absolute(str(eval_set.path)),
                        "truncated": eval_set.truncated, "dropped": eval_set.dropped, **metrics}
        headline = getattr(tuner.task, "summary_metrics", ("loss",))[0]
        log.info("%s set %s (%d rows): %s %.4f", eval_set.kind, name, len(eval_set.dataset), headline,
                 metrics[headline])
        if run_dir is not None:
            run_dir.append_metrics({"kind": "eval_set", "name": name, "set_kind": eval_set.kind, "step": step,
                                    **metrics})
    return scores


def summarize(scores: dict[str, dict[str, Any]], summary_metrics: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """What a run's summary shows of each set: its kind and the task's summary metrics."""
    return {name: {"kind": s["kind"], **{k: s[k] for k in summary_metrics if k in s}} for name, s in scores.items()}


def complete_finished(folder: Path, summary: dict[str, Any], sets: dict[str, EvalSet], spec, task,
                      pad_token_id: int) -> dict[str, Any]:
    """A finished run's summary with exactly ``sets``. Sets it was not scored on (new, or another file under
    the same name) are scored now on its kept checkpoint, and added to its metrics.json: no retraining."""
    if not sets:
        return {**summary, "eval_sets": {}}
    saved = read_metrics(folder)
    if saved is None:
        raise FreezetuneError(f"{folder / 'metrics.json'} is missing or unreadable; train the run again")
    scored = saved.get("eval_sets") or {}
    missing = {n: s for n, s in sets.items() if scored.get(n, {}).get("path") != absolute(str(s.path))}
    if missing:
        log.info("scoring %s on the kept checkpoint of %s", ", ".join(missing), folder)
        model, _, meta = load_checkpoint(folder)
        tuner = Finetuner(model, Plan.from_dict(meta["plan"]), config=spec.train, task=task,
                          pad_token_id=pad_token_id)
        step = saved["best_step"] if spec.train.keep_best else saved["costs"]["steps"]
        scored = {**scored, **score_eval_sets(tuner, missing, RunDir(folder), step)}
        saved["eval_sets"] = scored
        saved["summary"]["eval_sets"] = summarize(scored, task.summary_metrics)
        RunDir(folder).write_json("metrics.json", saved)
    # the kinds asked for now: a set moved from --extra-eval to --ood-set needs no new score
    wanted = {name: {**scored[name], "kind": s.kind} for name, s in sets.items()}
    return {**summary, "eval_sets": summarize(wanted, task.summary_metrics)}
