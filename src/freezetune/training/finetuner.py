"""Finetuner: trains a plan (or a schedule of plans) for a task and measures what it cost.

It owns the model, the current plan and the optimizer; the pieces it drives each own one idea:
the loop (loop.py), parameter groups (param_groups.py), the LR schedule (lr_schedule.py),
callbacks (callbacks.py), the frozen-prefix cache (cache_setup.py, prefix_cache.py) and resume
(resume.py). What the batches hold, the loss and the metrics belong to the task (tasks/).

The frozen prefix (embeddings and blocks below the lowest trainable unit) runs in eval mode,
so dropout never touches it; its parameters have ``requires_grad=False`` and its inputs are
token ids, so autograd records nothing there and no gradient can reach it.

This class takes a Plan, a static spec or a Schedule; it never measures the model to choose a
plan. Strategies that do (``auto``) are resolved before it starts: ``freezetune.Finetuner``
does that for you.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import replace
from typing import Any, Iterable

import torch
from torch import nn

from freezetune.core.config import TrainConfig
from freezetune.core.device import autocast_dtype, pick_device
from freezetune.core.errors import FreezetuneError
from freezetune.core.layout import LayerMap
from freezetune.core.lora import add_lora
from freezetune.core.plan import Plan
from freezetune.io.loader import make_loader
from freezetune.measure.costs import PeakMemory, StepTimer, count_parameters
from freezetune.strategies.lr_policy import default_lr
from freezetune.strategies.registry import needs_context, resolve
from freezetune.strategies.schedules import Schedule, StaticSchedule, rate_plan
from freezetune.tasks.classification import SequenceClassification
from freezetune.tasks.task import Task, monitored_metric
from freezetune.training import schedule_cache
from freezetune.training.cache_setup import prepare_caches
from freezetune.training.callbacks import Callback, checked
from freezetune.training.distributed import ranks
from freezetune.training.interrupts import stop_between_steps
from freezetune.training.loop import Loop
from freezetune.training.lr_schedule import warmup_steps
from freezetune.training.param_groups import build_optimizer, param_groups
from freezetune.training.prefix_cache import CacheStore, PrefixCache, start_at
from freezetune.training.resume import restore
from freezetune.training.state import FitResult, TrainState
from freezetune.training.suffix_checkpointing import checkpoint_suffix


class Finetuner:
    """Fine-tune ``model`` where the plan says, e.g. ``Finetuner(model, "top_k:2").fit(train, val)``.

    ``strategy`` is a plan spec, a :class:`Plan` or a :class:`Schedule`; ``freeze_pattern`` is an
    alias of it. ``task`` defaults to sequence classification over ``label_names``. Training
    options are :class:`TrainConfig` fields, given as ``config=`` or keyword arguments.
    ``cache_store`` lets several fits (a sweep) share frozen-prefix caches.
    """

    def __init__(self, model: nn.Module, strategy: str | Plan | Schedule = "full", *,
                 freeze_pattern: str | Plan | None = None, config: TrainConfig | None = None,
                 task: Task | None = None, label_names: list[str] | None = None, pad_token_id: int = 0,
                 tokenizer_name: str = "", state_dir: str | None = None, state_key: Any = None,
                 callbacks: Iterable[Callback] = (), cache_store: CacheStore | None = None, **options: Any):
        self.config = replace(config or TrainConfig(), **options).validate()
        self.model = model
        self.layers = LayerMap.from_model(model)
        self.task = task or SequenceClassification(label_names)
        self.config = replace(self.config, metric=monitored_metric(self.task, self.config.metric))
        strategy = freeze_pattern if freeze_pattern is not None else strategy
        if isinstance(strategy, Schedule):
            self.schedule: Schedule = strategy
        else:
            if needs_context(strategy):
                raise FreezetuneError(
                    f"{strategy!r} measures the model to choose a plan: use freezetune.Finetuner (it resolves it "
                    "before training) or pass the resolved Plan"
                )
            resolved = resolve(strategy, self.layers)
            self.schedule = StaticSchedule(resolved) if isinstance(resolved, Plan) else resolved
        self.tokenizer_name, self.pad_token_id = tokenizer_name, pad_token_id
        self.state_dir = state_dir  # where resumable state goes (None: nowhere)
        self.state_key = state_key  # identifies the configuration a saved state belongs to
        # A schedule that watches training (AutoFreeze) hears the loop like any callback.
        self.callbacks = checked([*callbacks, *([self.schedule] if isinstance(self.schedule, Callback) else [])])
        self.cache_store = cache_store if cache_store is not None else CacheStore()
        self.caches: dict[int, PrefixCache] = {}
        self.train_cache = self.eval_cache = None
        self.schedule_caches: schedule_cache.ScheduleCaches | None = None  # a schedule's caches, per boundary
        self.cache_status = "off: not trained yet"
        self.plan: Plan | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.lr = 0.0
        self.trained: set[str] = set()  # every parameter that trained under any plan so far
        self.state: TrainState | None = None  # the fit in progress
        self.ranks = ranks()  # this process's place when launched data-parallel (torchrun, accelerate launch)
        self.device = pick_device()
        self.autocast_dtype = autocast_dtype(self.config.precision, self.device)
        self.model.to(self.device)
        # Apply the initial plan now so trainable counts are right before fit().
        self.switch_plan(self.schedule.plan_at(0, 0, {}))

    # ------------------------------------------------------------------ the plan
    def switch_plan(self, plan: Plan) -> None:
        """Follow ``plan``: requires_grad, gradient checkpointing, optimizer groups, module modes."""
        old = self.plan
        if old == plan:
            return
        self.plan = plan
        if plan.lora is not None:
            # PEFT injects adapters once; parameter names change, so the map is rebuilt.
            self.model, self.layers = add_lora(self.model, plan.lora, self.layers)
        plan.apply(self.model, self.layers)
        self.trained.update(n for n, p in self.model.named_parameters() if p.requires_grad)
        if self.config.gradient_checkpointing:
            checkpoint_suffix(self.layers, self.frozen_prefix_depth())
        if old is None:
            self.lr = self.config.lr or default_lr(rate_plan(self.schedule), self.layers)
        self.build_optimizer()
        self.set_modes()
        if self.schedule_caches is not None and self.state is not None:
            schedule_cache.follow(self, self.schedule_caches, self.state.step)
        for callback in self.callbacks:
            callback.on_plan_change(self, old, plan)

    def build_optimizer(self) -> None:
        groups = param_groups(self.model, self.layers, self.plan, self.lr, self.config.weight_decay)
        self.optimizer = build_optimizer(groups, self.config, self.lr, previous=self.optimizer)

    def frozen_prefix_depth(self) -> int:
        return self.plan.frozen_prefix_depth(self.layers.num_blocks)

    def set_modes(self, training: bool = True) -> None:
        """Train mode for what trains; eval mode (no dropout) for the frozen prefix."""
        self.model.train(training)
        if training:
            for module in self.layers.prefix_modules(self.frozen_prefix_depth()):
                module.eval()

    def current_lr(self) -> float:
        return max(g["lr"] for g in self.optimizer.param_groups)

    def _cache_bytes(self) -> int:
        if self.schedule_caches is not None:
            return sum(c.bytes for per in self.schedule_caches.by_depth.values() for c in per.values())
        return sum(c.bytes for c in self.caches.values())

    # ------------------------------------------------------------------ forward
    def forward(self, inputs: dict[str, torch.Tensor], cache: PrefixCache | None = None) -> torch.Tensor:
        """The model's outputs for a batch's inputs; the single place the model runs.

        With a cache whose boundary is at or below the current frozen prefix, the forward
        starts at that boundary from the stored states (blocks between it and the first
        trainable block are frozen and in eval mode, so the result is the same).
        """
        index = inputs.pop("index", None)
        with torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
            if cache is not None and index is not None and cache.depth <= self.frozen_prefix_depth():
                hidden = cache.fetch(index, inputs["attention_mask"]).to(self.device, non_blocking=True)
                with start_at(self.layers, cache.depth, hidden):
                    return self.model(**inputs)
            return self.model(**inputs)

    def to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def loader(self, data, *, shuffle: bool, seed: int, batch_size: int, shard: bool = False):
        """A ``datasets.Dataset`` of tokenized rows gets a padded loader; batches pass through.

        A dataset with a prefix cache also yields each example's ``index`` into the cache. With
        ``shard`` (the training data) and several ranks, batches of ``batch_size`` per rank are drawn
        for all ranks together and this rank gets its part of each (distributed.py).
        """
        if not hasattr(data, "column_names"):
            return data
        per_boundary = self.schedule_caches.datasets if self.schedule_caches is not None else {}
        cached = id(data) in self.caches or id(data) in per_boundary
        if cached and "index" not in data.column_names:
            data = data.add_column("index", list(range(len(data))))
        sharding = self.ranks.shard if shard else None
        return make_loader(data, batch_size=batch_size * (self.ranks.world if sharding else 1), shuffle=shuffle,
                           seed=seed, pad_token_id=self.pad_token_id, bucket=self.config.bucket and shuffle,
                           shard=sharding)

    # ------------------------------------------------------------------ fit
    def fit(self, train, eval=None, *, resume: dict[str, Any] | None = None) -> FitResult:
        """Train; evaluate on ``eval`` every epoch (or ``eval_every`` steps); keep the best.

        ``resume`` is a state saved by an interrupted fit of the same configuration
        (see resume.py); training continues from it exactly.
        """
        cfg = self.config
        if getattr(self.plan, "retention_floor", None) is not None and not cfg.keep_best:
            raise FreezetuneError("a retention floor keeps the best evaluation that keeps it, so it needs the best "
                                  "weights restored: drop --no-keep-best")
        torch.manual_seed(cfg.seed)
        self.ranks.broadcast(self.model)  # every rank starts from rank 0's weights, as DDP does
        memory = PeakMemory(device=self.device).start()  # the cache's memory counts too
        global_batch = cfg.batch_size * self.ranks.world
        train_batches = math.ceil(len(train) / global_batch) if hasattr(train, "column_names") else len(train)
        steps_per_epoch = math.ceil(train_batches / cfg.grad_accum)
        total_steps = cfg.max_steps or steps_per_epoch * cfg.epochs
        epochs = math.ceil(total_steps / steps_per_epoch)
        cache_started = time.perf_counter()
        self.caches, self.cache_status = prepare_caches(self, self.cache_store, train, eval, epochs)
        self.train_cache = self.caches.get(id(train))
        self.eval_cache = self.caches.get(id(eval)) if eval is not None else None
        self.schedule_caches = None
        if not isinstance(self.schedule, StaticSchedule):  # the boundary moves: caches per boundary
            self.schedule_caches = schedule_cache.setup(self, train, eval, total_steps, steps_per_epoch)
            if self.schedule_caches is not None:
                schedule_cache.follow(self, self.schedule_caches, 0)
                self.cache_status = "on: per boundary, " + ("; ".join(self.schedule_caches.events) or "built as needed")
        cache_build_s = time.perf_counter() - cache_started
        train_loader = self.loader(train, shuffle=True, seed=cfg.seed, batch_size=cfg.batch_size, shard=True)
        eval_loader = None
        if eval is not None:
            eval_loader = self.loader(eval, shuffle=False, seed=0, batch_size=cfg.eval_batch_size)
        state = self.state = TrainState()
        for callback in self.callbacks:
            callback.on_fit_start(self)
        skip = restore(self, resume, state, train_loader) if resume is not None else 0
        timer = StepTimer(device=self.device)
        progress = _progress(total_steps, cfg.progress and self.ranks.is_main, desc=f"train {self.plan.spec}")
        progress.update(state.step)
        try:
            with stop_between_steps() as interrupt, _logs_above(progress):
                loop = Loop(self, state, total_steps=total_steps, warmup=warmup_steps(cfg.warmup_ratio, total_steps),
                            eval_loader=eval_loader, timer=timer, progress=progress, interrupt=interrupt)
                stopped_early = loop.run(train_loader, epochs, skip)
        finally:
            progress.close()
            memory.stop()
        train_time = loop.elapsed()["train_time_s"]  # earlier processes of a resumed run included
        if cfg.keep_best and state.best_weights is not None:
            self.load_trainable(state.best_weights)
        self.model.eval()
        if self.schedule_caches is not None:  # boundaries advanced while training count too
            cache_build_s = max(cache_build_s, self.schedule_caches.build_s)
        costs = self._costs(state, timer, memory, train_time, cache_build_s)
        result = FitResult(state.best_metrics, state.best_step, state.history, costs, self.plan, self.lr, stopped_early,
                           trained_names=sorted(self.trained))
        for callback in self.callbacks:
            callback.on_fit_end(self, result)
        return result

    def _costs(self, state: TrainState, timer: StepTimer, memory: PeakMemory, train_time: float,
               cache_build_s: float) -> dict[str, Any]:
        now, total = count_parameters(self.model)
        params = dict(self.model.named_parameters())
        trainable = sum(params[n].numel() for n in self.trained if n in params)  # a schedule's: all it ever trained
        return {
            "trainable_params": trainable,
            "trainable_params_at_end": now,
            "total_params": total,
            "trainable_pct": 100.0 * trainable / total,
            "frozen_prefix_depth": self.frozen_prefix_depth(),
            "train_time_s": train_time,
            "epoch_times_s": list(timer.epoch_times),
            "time_per_epoch_s": sum(timer.epoch_times) / max(1, len(timer.epoch_times)),
            "steady_step_s": timer.steady_state_step_s(),
            "steps": state.step,
            "peak_memory_bytes": memory.peak_bytes,
            "memory_kind": memory.kind,
            "cache": self.cache_status,
            "cache_bytes": self._cache_bytes(),
            "cache_build_s": cache_build_s,
            "device": str(self.device),
            "precision": str(self.autocast_dtype or "fp32").replace("torch.", ""),
        }

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def collect(self, data, cache: PrefixCache | None = None) -> list[dict[str, torch.Tensor]]:
        """What the task keeps of every batch of ``data`` (a dataset or ready batches), in order."""
        loader = self.loader(data, shuffle=False, seed=0, batch_size=self.config.eval_batch_size)
        was_training = self.model.training
        self.model.eval()
        kept = []
        for batch in loader:
            inputs, targets = self.task.split(self.to_device(batch))
            kept.append(self.task.keep(self.forward(inputs, cache), targets))
        if was_training:
            self.set_modes(True)
        return kept

    def evaluate(self, data, cache: PrefixCache | None = None) -> dict[str, Any]:
        """The task's metrics on ``data`` (classification: loss, accuracy, macro-F1, MCC, per class)."""
        return self.task.metrics(self.collect(data, cache))

    # ------------------------------------------------------------------ weights
    def trainable_state(self) -> dict[str, torch.Tensor]:
        """Copies of every parameter that has trained so far (under a schedule, earlier plans' too)."""
        return {n: p.detach().clone() for n, p in self.model.named_parameters() if n in self.trained}

    def load_trainable(self, weights: dict[str, torch.Tensor]) -> None:
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, value in weights.items():
                params[name].copy_(value)


def _progress(total: int, enabled: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, leave=False, dynamic_ncols=True)


def _logs_above(progress):
    """While a bar shows, log lines go above it instead of through it."""
    if progress.disable:
        return contextlib.nullcontext()
    from tqdm.contrib.logging import logging_redirect_tqdm

    return logging_redirect_tqdm()
