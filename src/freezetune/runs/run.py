"""One training run, end to end: data -> model -> plan -> Finetuner -> metrics in a run folder.

Shared by ``freezetune train``, the demo and the benchmarks, so that all of them load, split,
train and measure the same way. Validation comes first and is cheap: a bad strategy, column,
file or output folder fails before any model is loaded and before anything is written.
"""

from __future__ import annotations

import copy
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from freezetune.core.config import NOT_TRAINING
from freezetune.core.errors import FreezetuneError, Interrupted
from freezetune.core.layout import LayerMap
from freezetune.core.model import POOLINGS, load_tokenizer
from freezetune.io.checkpoint import base_fingerprint, save_checkpoint
from freezetune.io.data import ClassificationData
from freezetune.io.lock import check_unlocked
from freezetune.io.rundir import RunDir
from freezetune.measure.costs import WAITED_PARTS, waited_s
from freezetune.measure.retention import measure, resolve_reference
from freezetune.measure.units import format_bytes, format_duration
from freezetune.runs.curves import write_curves
from freezetune.runs.eval_sets import score_eval_sets, summarize
from freezetune.runs.listeners import listeners
from freezetune.runs.loading import load_data, load_model, make_task, seed_everything
from freezetune.runs.paths import absolute_paths
from freezetune.runs.preflight import check_inputs
from freezetune.runs.retention_retry import retry_deeper
from freezetune.runs.spec import RunSpec
from freezetune.runs.tensorboard_log import TensorBoardLogger
from freezetune.scoring.resolve import Resolution, resolve_strategy
from freezetune.scoring.sample import sample_batches
from freezetune.strategies.registry import needs_context
from freezetune.tasks.task import monitored_metric
from freezetune.training.distributed import ranks
from freezetune.training.finetuner import Finetuner
from freezetune.training.prefix_cache import CacheStore
from freezetune.training.resume import changed_settings, has_state, load_state
from freezetune.training.state import FitResult

log = logging.getLogger("freezetune")


@dataclass
class RunResult:
    spec: RunSpec
    fit: FitResult
    validation: dict[str, Any]
    test: dict[str, Any] | None
    data_summary: dict[str, Any]
    output: Path | None
    summary_metrics: tuple[str, ...] = ("accuracy", "macro_f1", "mcc")  # the task's, headline first
    eval_sets: dict[str, dict[str, Any]] = field(default_factory=dict)  # --extra-eval / --ood-set: name -> metrics
    reports: bool = True  # False on the data-parallel ranks other than 0: rank 0 reports for all

    def reported(self) -> tuple[str, dict[str, Any]]:
        """Which numbers to report: test when given, else (optimistic) validation."""
        return ("test", self.test) if self.test is not None else ("validation", self.validation)

    def summary(self) -> dict[str, Any]:
        split, metrics = self.reported()
        return {
            "strategy": self.spec.strategy,
            "task": self.spec.data.task,
            "reported_split": split,
            "reported_is_optimistic": split == "validation",
            "monitored": self.spec.train.metric,  # what picked the best epoch (and a sweep's best rate)
            **{k: metrics[k] for k in self.summary_metrics if k in metrics},
            "eval_sets": summarize(self.eval_sets, self.summary_metrics),
            "lr": self.fit.lr,
            **{k: v for k, v in self.fit.costs.items() if k not in ("epoch_times_s", "retention")},
            **_retention_fields(self.fit.costs.get("retention")),
        }


def _retention_fields(retention: dict[str, Any] | None) -> dict[str, Any]:
    if not retention:
        return {}
    return {"retention_reference": retention["reference"], "retention_before": retention["before"],
            "retention_after": retention["after"], "retention_change": retention["change"]}


@dataclass
class RunCaches:
    """What the runs of one sweep reuse: frozen-prefix caches and the base model's retention score.

    A sweep makes one and hands it to each of its runs; a lone run gets a fresh one.
    """

    prefix: CacheStore = field(default_factory=CacheStore)
    retention_before: dict[tuple, float] = field(default_factory=dict)


class Retention:
    """Measures the pretrained skill before training (once per base) and after it."""

    def __init__(self, spec: RunSpec, model, tokenizer, before: dict[tuple, float]):
        d = spec.data
        self.kind = resolve_reference(model.backbone, d.retention, d.retention_data)
        self.options = dict(reference=self.kind, reference_data=d.retention_data, limit=d.retention_limit,
                            pooling="mean" if self.kind == "sts" else _pooling(model), max_length=d.max_length)
        self.key = (spec.model.model, spec.model.gguf_file, model.pooling, *map(str, self.options.values()))
        # CKA compares with the untouched base, so keep a copy; sts/ppl only need its score.
        self.base = copy.deepcopy(model.backbone) if self.kind == "cka" else None
        self.before = before
        if self.kind != "cka" and self.key not in before:
            log.info("measuring retention (%s) of the base model ...", self.kind)  # tens of seconds on a CPU
            scores = measure(model.backbone, None, tokenizer, **self.options)
            before[self.key] = scores["before"]
            log.info("retention of the base model: %.4f (%s)", scores["before"], format_duration(scores["seconds"]))

    def after(self, model, tokenizer) -> dict[str, Any]:
        base = self.base if self.base is not None else model.backbone
        return measure(base, model.backbone, tokenizer, before=self.before.get(self.key), **self.options)

    def kept(self, model, tokenizer) -> float:
        """The share of the base model's skill ``model`` keeps: after/before (perplexity: before/after)."""
        scores = self.after(model, tokenizer)
        if self.kind == "ppl":
            return scores["before"] / scores["after"]
        return scores["after"] / scores["before"] if scores["before"] else 0.0


def _pooling(model) -> str:
    """How CKA reads a model: its own pooling; a causal LM pools nothing, so its last token."""
    return model.pooling if model.pooling in POOLINGS else "last"


def resolve_for_run(spec: RunSpec, model, task, data: ClassificationData, tokenizer, caches: RunCaches,
                    retention: Retention | None) -> Resolution:
    """Resolve ``spec.strategy`` with everything a measuring strategy may ask for (drawn only when asked)."""
    pad_id = tokenizer.pad_token_id or 0
    if needs_context(spec.strategy):
        log.info("%s: measuring the model on the training data to choose the plan ...", spec.strategy)
    return resolve_strategy(
        spec.strategy, model, task=task,
        sample=lambda: sample_batches(data.train, seed=spec.train.seed, pad_token_id=pad_id),
        train=data.train, validation=data.validation, config=spec.train, pad_token_id=pad_id,
        cache_store=caches.prefix,
        retention=(lambda m: retention.kept(m, tokenizer)) if retention is not None else None,
    )


def run_training(
    spec: RunSpec, *, data: ClassificationData | None = None, tokenizer=None, resume: bool = False,
    caches: RunCaches | None = None, resolution: Resolution | None = None,
) -> RunResult:
    """Train one plan as ``spec`` says; write the run folder when ``spec.output`` is set.

    ``data`` and ``tokenizer`` may be passed in to share one tokenization across runs, ``caches``
    to share prefix caches and retention scores. ``resolution`` is ``spec.strategy`` already
    resolved (a sweep scores ``auto`` once per seed and trains exactly that plan); without it the
    strategy is resolved here, measuring strategies on a sample of the training data.
    ``resume=True`` continues the interrupted run in ``spec.output`` (same settings required).
    """
    spec = spec.resolved()
    check_inputs([spec.strategy], spec, spec.output, layout=resolution is None)  # a sweep checked the layout
    saved_state = None
    if resume:
        run_dir, saved_state = _resumable(spec)
    else:
        run_dir = RunDir.create(spec.output, overwrite=spec.overwrite) if spec.output else None
    place = ranks()  # launched data-parallel: every rank checks the folder, rank 0 alone writes it
    if place.world > 1 and needs_context(spec.strategy):
        raise FreezetuneError(f"--strategy {spec.strategy} measures the data before training, and {place.world} "
                              "processes could each choose another plan: run it in one process (or `freezetune "
                              "score`), then launch the plan it chose (e.g. --strategy layers:4,5)")
    place.barrier()  # no rank checks the folder after rank 0 started writing it
    if not place.is_main:
        run_dir = None
    try:
        return _train(spec, run_dir, saved_state, resume=resume, data=data, tokenizer=tokenizer, caches=caches,
                      resolution=resolution)
    except Interrupted as stop:
        stop.run = str(run_dir.path) if run_dir and run_dir.file("config.yaml").is_file() else None
        raise
    finally:
        if run_dir is not None:
            run_dir.close()  # another process may write here now


def _train(spec: RunSpec, run_dir: RunDir | None, saved_state: dict[str, Any] | None, *, resume: bool,
           data: ClassificationData | None, tokenizer, caches: RunCaches | None,
           resolution: Resolution | None) -> RunResult:
    seed_everything(spec.train.seed)
    m = spec.model
    if tokenizer is None:
        tokenizer = load_tokenizer(m.model, gguf_file=m.gguf_file, trust_remote_code=m.trust_remote_code)
    if data is None:
        data = load_data(spec, tokenizer)
    caches = caches or RunCaches()
    task = make_task(spec, data)
    spec.train.metric = monitored_metric(task, spec.train.metric)  # written out: config.yaml names it
    model = load_model(spec, task)
    spec.model.pooling = model.pooling
    fingerprint = base_fingerprint(model.backbone) if run_dir else None  # before training changes it
    retention = Retention(spec, model, tokenizer, caches.retention_before) if spec.data.retention != "none" else None
    pad_id = tokenizer.pad_token_id or 0
    if resolution is None:
        resolution = resolve_for_run(spec, model, task, data, tokenizer, caches, retention)
    tuner = Finetuner(
        model,
        resolution.strategy,
        config=spec.train,
        task=task,
        pad_token_id=pad_id,
        tokenizer_name=getattr(tokenizer, "name_or_path", ""),
        state_dir=str(run_dir.file("resume")) if run_dir else None,
        state_key=_resume_key(spec),
        # the plan's own callbacks first, so that a retention guard's numbers reach the logs
        callbacks=[*resolution.callbacks, *listeners(run_dir, spec.train)],
        cache_store=caches.prefix,
    )
    log.info("%s", tuner.plan.describe(tuner.layers))
    for selection in resolution.selections:
        log.info("%s", selection["explanation"])
        if run_dir:
            if "scores" in selection:
                run_dir.write_json("scores.json", selection["scores"].to_dict())
            if "race" in selection:
                run_dir.write_json("race.json", selection["race"])
    why = [s["explanation"] for s in resolution.selections]  # selection.txt, before training and after retries
    if run_dir and why:
        run_dir.write_text("selection.txt", "\n\n".join(why) + "\n")
    if run_dir and not resume:
        # Written once the inputs proved good and before training, so an interrupted run can resume.
        run_dir.write_yaml("config.yaml", spec.flat())
    try:
        fit = tuner.fit(data.train, data.validation, resume=saved_state)
    finally:  # a NaN stop or a signal skips on_fit_end
        for callback in tuner.callbacks:
            if isinstance(callback, TensorBoardLogger):
                callback.close()
    if tuner.plan.retention_floor is not None and retention is not None:
        tuner, fit, retries = retry_deeper(tuner, fit, data, spec, task,
                                           lambda trained: retention.kept(trained, tokenizer), run_dir)
        if run_dir and retries:
            run_dir.write_text("selection.txt", "\n\n".join([*why, retries]) + "\n")
    if resolution.selections:
        scoring_s = resolution.scoring_s
        fit.costs["scoring_s"] = scoring_s
        fit.costs["scoring_share_of_training"] = scoring_s / fit.costs["train_time_s"]
        log.info("scoring took %s = %.1f%% of this run's training (%s)", format_duration(scoring_s),
                 100 * fit.costs["scoring_share_of_training"], format_duration(fit.costs["train_time_s"]))
    fit.costs["total_time_s"] = waited_s(fit.costs)  # after the retries and the scoring: all of it
    log.info("time waited: %s (training %s, cache build %s, scoring %s)", format_duration(fit.costs["total_time_s"]),
             *(format_duration(fit.costs.get(part) or 0.0) for part in WAITED_PARTS))
    spec.train.lr = fit.lr  # the resolved config names the rate actually used
    validation = fit.best_metrics or tuner.evaluate(data.validation)
    test = tuner.evaluate(data.test) if data.test is not None else None
    kept_step = fit.best_step if spec.train.keep_best else fit.costs["steps"]  # the weights the run keeps
    eval_sets = score_eval_sets(tuner, getattr(data, "eval_sets", {}), run_dir, kept_step)
    if retention is not None:
        log.info("measuring retention (%s) of the fine-tuned model ...", retention.kind)
        scores = fit.costs["retention"] = retention.after(tuner.model, tokenizer)
        log.info("retention (%s on %s, limit %s): %.4f -> %.4f (%s)", retention.kind, scores.get("source", "?"),
                 scores.get("limit"), scores["before"], scores["after"], format_duration(scores["seconds"]))
    summary = {
        **_baseline(task, data),
        "train_rows": len(data.train),
        "validation_rows": len(data.validation),
        "test_rows": len(data.test) if data.test is not None else 0,
        "labels": data.label_names,
        "validation_source": data.validation_source,
        "truncated": data.truncated,
        "dropped": data.dropped,
    }
    result = RunResult(spec, fit, validation, test, summary, run_dir.path if run_dir else None, task.summary_metrics,
                       eval_sets, reports=ranks().is_main)
    if run_dir:
        started = time.perf_counter()
        saved = save_checkpoint(
            run_dir.file("checkpoint"), tuner.model, fit.plan, base_path=m.model, gguf_file=m.gguf_file,
            base_fingerprint=fingerprint, label_names=data.label_names, config=spec.flat(), task=task.name,
            trained_names=fit.trained_names,  # a schedule's checkpoint holds every tensor that ever trained
        )
        fit.costs["checkpoint_bytes"] = saved["checkpoint_bytes"]
        fit.costs["full_model_bytes"] = saved["full_model_bytes"]
        log.info("checkpoint saved in %s: %s of trained tensors (a full model is %s)",
                 format_duration(time.perf_counter() - started), format_bytes(saved["checkpoint_bytes"]),
                 format_bytes(saved["full_model_bytes"]))
        _write_run(run_dir, result, tuner.layers)
        shutil.rmtree(run_dir.file("resume"), ignore_errors=True)  # finished: the state is dead weight
    return result


def _baseline(task, data) -> dict[str, Any]:
    """What learning nothing scores on the reported split, where the task knows (a majority class)."""
    reported = data.test if data.test is not None else data.validation
    if not hasattr(task, "baseline") or any("labels" not in d.column_names for d in (data.train, reported)):
        return {}
    return {"baseline": task.baseline(list(data.train["labels"]), list(reported["labels"]))}


def _resume_key(spec: RunSpec) -> dict[str, Any]:
    return {k: v for k, v in spec.flat().items() if k not in NOT_TRAINING}


def _resumable(spec: RunSpec) -> tuple[RunDir, dict[str, Any] | None]:
    """The interrupted run's folder and saved state (None: stopped before its first save), refusing a changed
    configuration."""
    import yaml

    if not spec.output:
        raise FreezetuneError("--resume needs the run folder to continue")
    folder = Path(spec.output)
    config = folder / "config.yaml"
    if not config.is_file():
        raise FreezetuneError(f"{folder} is not a freezetune run (no config.yaml); nothing to resume")
    check_unlocked(folder)
    saved_config = yaml.safe_load(config.read_text()) or {}
    saved_config = absolute_paths(saved_config)  # older runs saved relative paths
    current = _resume_key(spec)
    changed = changed_settings({k: v for k, v in saved_config.items() if k not in NOT_TRAINING}, current, set())
    if changed:
        raise FreezetuneError(
            f"cannot resume {folder} with changed settings ({'; '.join(changed[:3])}); "
            "resume with the same settings or start a new run with another --output"
        )
    run_dir = RunDir(folder, lock=True)
    if not has_state(folder / "resume") and not (folder / "metrics.json").is_file():
        log.info("resuming %s: it stopped before its first save, so training starts from step 0", folder)
        return run_dir, None
    state = load_state(folder / "resume")
    log.info("resuming %s from step %d (epoch %d)", folder, state["step"], state["epoch"] + 1)
    return run_dir, state


def _write_run(run_dir: RunDir, result: RunResult, layers: LayerMap) -> None:
    spec = result.spec
    run_dir.write_yaml("config.yaml", spec.flat())  # again: now with the resolved learning rate
    run_dir.write_json("plan.json", result.fit.plan.to_dict())
    split, _ = result.reported()
    run_dir.write_json(
        "metrics.json",
        {
            "summary": result.summary(),
            "validation": result.validation,
            "test": result.test,
            "eval_sets": result.eval_sets,
            "reported_split": split,
            "note": None if split == "test" else (
                "no --test-data: these are validation numbers, used for model selection, so optimistic"
            ),
            "costs": result.fit.costs,
            "best_step": result.fit.best_step,
            "stopped_early": result.fit.stopped_early,
            "lr": result.fit.lr,
            "plan": result.fit.plan.to_dict(),
            "units": layers.counts(),
            "data": result.data_summary,
        },
    )
    write_curves(run_dir.path)
