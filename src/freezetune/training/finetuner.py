"""Finetuner: trains a plan (or a schedule of plans) and measures what it cost.

The loop is small on purpose; what varies is pluggable:

* **schedules** — ``schedule.plan_at(step, epoch, observations)`` may return a new plan at any
  step; the switch (``_switch_plan``) re-applies ``requires_grad``, frees the optimizer state of
  parameters that stopped training and gives new ones a real update;
* **forward** — ``self.forward(batch)`` is the one place the model runs, so a frozen-prefix
  cache can start the forward at a block boundary;
* **callbacks** — objects with any of ``on_plan_change``, ``on_step_end``, ``on_evaluate``,
  ``on_fit_end`` (run logging, progress, custom hooks).

The frozen prefix (embeddings and blocks below the lowest trainable unit) runs in eval mode,
so dropout never touches it; its parameters have ``requires_grad=False`` and its inputs are
token ids, so autograd records nothing there and no gradient can reach it.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Protocol

import torch
import torch.utils.checkpoint
from torch import nn

from freezetune.training.prefix_cache import SHARED_CACHES, CacheKey, PrefixCache, build_cache, data_fingerprint, prefix_fingerprint, start_at
from freezetune.core.config import TrainConfig
from freezetune.measure.costs import PeakMemory, StepTimer, count_parameters
from freezetune.core.errors import FreezetuneError
from freezetune.core.layout import EMBEDDINGS, HEAD, LayerMap, block_unit, is_bias
from freezetune.measure.metrics import classification_metrics, is_better
from freezetune.core.plan import Plan
from freezetune.training.resume import loader_generators, rng_state, save_state, set_rng_state
from freezetune.scoring.rgn import RelativeGradientNorms, unit_means
from freezetune.strategies.registry import resolve

log = logging.getLogger("freezetune")


# ---------------------------------------------------------------------- schedules
class Schedule(Protocol):
    def plan_at(self, step: int, epoch: int, observations: dict[str, Any]) -> Plan: ...


@dataclass(frozen=True)
class StaticSchedule:
    """A plan that never changes."""

    plan: Plan

    def plan_at(self, step: int, epoch: int, observations: dict[str, Any]) -> Plan:
        return self.plan


def default_lr(plan: Plan, layers: LayerMap) -> float:
    """The best rates on MiniLM grow as fewer parameters train (see the README's evidence)."""
    n = layers.num_blocks
    blocks = plan.trainable_blocks(n)
    if plan.lora is not None:
        return 2e-3
    if not blocks and not plan.embeddings:
        return 3e-3
    if plan.modules and set(plan.modules) <= {"bias", "norm"}:
        return 1e-3
    if len(blocks) <= n / 3 and not plan.embeddings:
        return 3e-4
    return 1e-4


# ---------------------------------------------------------------------- results
@dataclass
class FitResult:
    best_metrics: dict[str, Any]
    best_step: int
    history: list[dict[str, Any]]
    costs: dict[str, Any]
    plan: Plan
    lr: float
    stopped_early: bool = False


@dataclass
class _State:
    step: int = 0  # optimizer steps taken
    epoch: int = 0
    best_value: float | None = None
    best_step: int = 0
    best_metrics: dict[str, Any] = field(default_factory=dict)
    best_weights: dict[str, torch.Tensor] | None = None
    evals_without_improvement: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    observations: dict[str, Any] = field(default_factory=dict)
    batches_done: int = 0  # batches of the current epoch already trained on
    epoch_order: list[torch.Tensor] = field(default_factory=list)  # loader RNG at the epoch's start
    resume_rng: dict[str, Any] | None = None
    rgn_log: list[dict[str, float]] = field(default_factory=list)  # Auto-RGN: per-unit rate multipliers by epoch


# ---------------------------------------------------------------------- the trainer
class Finetuner:
    """Fine-tune ``model`` where the plan says, e.g. ``Finetuner(model, "top_k:2").fit(train, val)``.

    ``strategy`` is a plan spec (see ``freezetune strategies``), a :class:`Plan`, or a schedule
    (an object with ``plan_at``). ``freeze_pattern`` is an alias of ``strategy``. Training
    options are :class:`TrainConfig` fields, given as ``config=`` or keyword arguments.
    """

    def __init__(
        self,
        model: nn.Module,
        strategy: str | Plan | Schedule = "full",
        *,
        freeze_pattern: str | Plan | None = None,
        config: TrainConfig | None = None,
        label_names: list[str] | None = None,
        pad_token_id: int = 0,
        tokenizer_name: str = "",
        state_dir: str | None = None,
        state_key: Any = None,
        callbacks: Iterable[Any] = (),
        **options: Any,
    ):
        self.config = replace(config or TrainConfig(), **options).validate()
        self.model = model
        self.layers = LayerMap.from_model(model)
        strategy = freeze_pattern if freeze_pattern is not None else strategy
        if hasattr(strategy, "plan_at"):
            self.schedule: Schedule = strategy  # type: ignore[assignment]
        else:
            self.schedule = StaticSchedule(resolve(strategy, self.layers))  # type: ignore[arg-type]
        self.label_names = label_names
        self.tokenizer_name = tokenizer_name
        self.state_dir = state_dir  # where resumable state goes (None: nowhere)
        self.state_key = state_key  # identifies the configuration a saved state belongs to
        self._caches: dict[int, PrefixCache] = {}
        self._train_cache = self._eval_cache = None
        self.cache_status = "off: not trained yet"
        self.pad_token_id = pad_token_id
        self.callbacks = list(callbacks)
        self.plan: Plan | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self._rgn: RelativeGradientNorms | None = None
        self.lr = 0.0
        self.device = _pick_device()
        self.autocast_dtype = _autocast_dtype(self.config.precision, self.device)
        self.model.to(self.device)
        # Apply the initial plan now so trainable counts are right before fit().
        self._switch_plan(self.schedule.plan_at(0, 0, {}))

    # ------------------------------------------------------------------ plan changes
    def _switch_plan(self, plan: Plan) -> None:
        old = self.plan
        if old == plan:
            return
        self.plan = plan
        if plan.lora is not None:
            from freezetune.core.lora import add_lora

            # PEFT wraps the model once; parameter names change, so the map is rebuilt.
            self.model, self.layers = add_lora(self.model, plan.lora, self.layers)
        plan.apply(self.model, self.layers)
        if self.config.gradient_checkpointing:
            self._checkpoint_suffix()
        if old is None:
            self.lr = self.config.lr or default_lr(plan, self.layers)
        self._build_optimizer()
        self._set_modes()
        for callback in self.callbacks:
            if hasattr(callback, "on_plan_change"):
                callback.on_plan_change(self, old, plan)

    def _checkpoint_suffix(self) -> None:
        """Activation checkpointing on the trainable blocks only.

        Hugging Face's ``gradient_checkpointing_enable`` wraps every block and, with the
        reentrant variant, needs ``enable_input_require_grads``, which drags backward down
        through a frozen prefix. Non-reentrant checkpointing of the suffix blocks needs neither.
        """
        depth = self.frozen_prefix_depth()
        for index, block in enumerate(self.layers.blocks):
            original = block.__dict__.pop("_unwrapped_forward", None) or block.forward
            if index >= depth:
                block._unwrapped_forward = original
                block.forward = functools.partial(_checkpointed, original)
            else:
                block.forward = original

    def _build_optimizer(self) -> None:
        """Param groups per unit (its LR multiplier) x decay / no decay; state carried over.

        A plan with per-tensor rates gets one group per tensor instead. State of parameters that
        stopped training is dropped (it would pin memory and, worse, resume stale moments later);
        parameters that start training begin with fresh state.
        """
        old_state = self.optimizer.state if self.optimizer is not None else {}
        per_tensor = self.plan.per_tensor_lr
        groups: dict[tuple[str, bool, str], list[tuple[str, nn.Parameter]]] = {}
        named = dict(self.model.named_parameters())
        units = {n: unit for unit, names in self.layers.units.items() for n in names}
        for name, param in named.items():
            if not param.requires_grad:
                continue
            # Adapter tensors added by PEFT after the map was built go with their block.
            unit = units.get(name) or self._unit_for(name)
            decay = name not in units or not (
                is_bias(name) or self.layers.groups.get(name) == "norm" or param.ndim < 2
            )
            groups.setdefault((unit, decay, name if per_tensor else ""), []).append((name, param))
        param_groups = []
        for (unit, decay, tensor), members in groups.items():
            multiplier = self.plan.lr_multiplier(unit, tensor or None)
            param_groups.append(
                {
                    "params": [p for _, p in members],
                    "weight_decay": self.config.weight_decay if decay else 0.0,
                    "base_lr": self.lr * multiplier,
                    "lr": self.lr * multiplier,
                    "unit": unit,
                    "names": [n for n, _ in members],
                }
            )
        if not param_groups:
            raise FreezetuneError(f"plan {self.plan.spec!r} trains nothing; pick a strategy that trains something")
        if self.config.optimizer == "sgd":
            optimizer = torch.optim.SGD(param_groups, lr=self.lr, momentum=self.config.momentum)
        else:
            optimizer = torch.optim.AdamW(param_groups, lr=self.lr)
        for group in param_groups:
            for param in group["params"]:
                if param in old_state:
                    optimizer.state[param] = old_state[param]
        self.optimizer = optimizer
        self._rgn = RelativeGradientNorms() if self.plan.lr_rescale == "rgn" else None

    def _unit_for(self, name: str) -> str:
        prefix = self.layers.block_path + "."
        if name.startswith(prefix):
            return block_unit(int(name[len(prefix) :].split(".", 1)[0]))
        return HEAD

    def frozen_prefix_depth(self) -> int:
        return self.plan.frozen_prefix_depth(self.layers.num_blocks)

    def _set_modes(self, training: bool = True) -> None:
        """Train mode for what trains; eval mode (no dropout) for the frozen prefix."""
        self.model.train(training)
        if training:
            for module in self.layers.prefix_modules(self.frozen_prefix_depth()):
                module.eval()

    # ------------------------------------------------------------------ forward
    def forward(self, batch: dict[str, torch.Tensor], cache: PrefixCache | None = None) -> torch.Tensor:
        """Logits for a batch; the single place the model runs.

        With a cache whose boundary is at or below the current frozen prefix, the forward
        starts at that boundary from the stored states (blocks between it and the first
        trainable block are frozen and in eval mode, so the result is the same).
        """
        index = batch.pop("index", None)
        with torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
            if cache is not None and index is not None and cache.depth <= self.frozen_prefix_depth():
                hidden = cache.fetch(index, batch["attention_mask"]).to(self.device, non_blocking=True)
                with start_at(self.layers, cache.depth, hidden):
                    return self.model(**batch)
            return self.model(**batch)

    def _to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    # ------------------------------------------------------------------ loaders
    def _loader(self, data, *, shuffle: bool, seed: int, batch_size: int):
        """A ``datasets.Dataset`` of tokenized rows gets a padded loader; batches pass through.

        A dataset with a prefix cache also yields each example's ``index`` into the cache.
        """
        if not hasattr(data, "column_names"):
            return data
        from freezetune.io.data import make_loader

        if id(data) in self._caches and "index" not in data.column_names:
            data = data.add_column("index", list(range(len(data))))
        return make_loader(
            data,
            batch_size=batch_size,
            shuffle=shuffle,
            seed=seed,
            pad_token_id=self.pad_token_id,
            bucket=self.config.bucket and shuffle,
        )

    # ------------------------------------------------------------------ fit
    def fit(self, train, eval=None, *, resume: dict[str, Any] | None = None) -> FitResult:
        """Train; evaluate on ``eval`` every epoch (or ``eval_every`` steps); keep the best.

        ``resume`` is a state saved by an interrupted fit of the same configuration
        (see resume.py); training continues from it exactly.
        """
        cfg = self.config
        torch.manual_seed(cfg.seed)
        memory = PeakMemory(device=self.device).start()  # the cache's memory counts too
        train_batches = math.ceil(len(train) / cfg.batch_size) if hasattr(train, "column_names") else len(train)
        steps_per_epoch = math.ceil(train_batches / cfg.grad_accum)
        total_steps = cfg.max_steps or steps_per_epoch * cfg.epochs
        epochs = math.ceil(total_steps / steps_per_epoch)
        self._caches = {}
        cache_started = time.perf_counter()
        self.cache_status = self._prepare_caches(train, eval, epochs)
        cache_build_s = time.perf_counter() - cache_started
        self._train_cache = self._caches.get(id(train))
        self._eval_cache = self._caches.get(id(eval)) if eval is not None else None
        train_loader = self._loader(train, shuffle=True, seed=cfg.seed, batch_size=cfg.batch_size)
        eval_loader = (
            self._loader(eval, shuffle=False, seed=0, batch_size=cfg.eval_batch_size) if eval is not None else None
        )
        warmup = int(cfg.warmup_ratio * total_steps)
        state = _State()
        if self.plan.lr_rescale:
            state.rgn_log.append(unit_means(dict(self.plan.tensor_lr_multipliers), self.layers))
        skip = 0
        if resume is not None:
            skip = self._restore(resume, state, train_loader)
        timer = StepTimer(device=self.device)
        started = time.perf_counter()
        progress = _progress(total_steps, cfg.progress, desc=f"train {self.plan.spec}")
        progress.update(state.step)
        stopped_early = False
        try:
            for epoch in range(state.epoch, epochs):
                state.epoch = epoch
                if skip == 0:  # a resumed epoch replays the order saved for it
                    state.epoch_order = [g.get_state() for g in loader_generators(train_loader)]
                timer.start_epoch()
                stop = self._run_epoch(train_loader, eval_loader, state, timer, total_steps, warmup, progress, skip)
                skip = 0
                timer.end_epoch()
                if self._rgn is not None and state.step < total_steps:
                    new = self._rgn.rescale(self.optimizer, self.lr, self.layers.block_of_tensor())
                    state.rgn_log.append(unit_means(new, self.layers))
                if eval_loader is not None and cfg.eval_every is None:
                    stop = self._evaluate_and_track(eval_loader, state) or stop
                if stop or state.step >= total_steps:
                    stopped_early = stop and state.step < total_steps
                    break
                state.epoch, state.batches_done = epoch + 1, 0
                state.epoch_order = [g.get_state() for g in loader_generators(train_loader)]
                self._save_state(state)
        finally:
            progress.close()
            memory.stop()
        train_time = time.perf_counter() - started
        if cfg.keep_best and state.best_weights is not None:
            self._load_trainable(state.best_weights)
        self.model.eval()
        trainable, total = count_parameters(self.model)
        costs = {
            "trainable_params": trainable,
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
            "cache_bytes": sum(c.bytes for c in self._caches.values()),
            "cache_build_s": cache_build_s,
            "device": str(self.device),
            "precision": str(self.autocast_dtype or "fp32").replace("torch.", ""),
        }
        if state.rgn_log:
            costs["rgn_lr_multipliers"] = state.rgn_log
        result = FitResult(
            best_metrics=state.best_metrics,
            best_step=state.best_step,
            history=state.history,
            costs=costs,
            plan=self.plan,
            lr=self.lr,
            stopped_early=stopped_early,
        )
        for callback in self.callbacks:
            if hasattr(callback, "on_fit_end"):
                callback.on_fit_end(self, result)
        return result

    def _run_epoch(self, loader, eval_loader, state: _State, timer, total_steps, warmup, progress, skip=0) -> bool:
        cfg = self.config
        self._set_modes(True)
        micro = skip  # batches of this epoch consumed
        pending = 0  # batches whose gradients await an optimizer step
        batches = iter(loader)
        if skip:
            for _ in range(skip):  # replay the saved order up to where the run stopped
                next(batches)
            set_rng_state(state.resume_rng)
        timer.start_step()
        for batch in batches:
            plan = self.schedule.plan_at(state.step, state.epoch, state.observations)
            if plan != self.plan:
                self._switch_plan(plan)
            batch = self._to_device(batch)
            labels = batch.pop("labels")
            logits = self.forward(batch, self._train_cache)
            loss = nn.functional.cross_entropy(logits.float(), labels) / cfg.grad_accum
            loss.backward()
            micro += 1
            pending += 1
            if pending < cfg.grad_accum:
                continue
            pending = 0
            if self._step(state, micro, loss.item() * cfg.grad_accum, eval_loader, timer, total_steps, warmup, progress):
                return True
            if state.step >= total_steps:
                return False
            timer.start_step()
        if pending:  # a partial accumulation at the end of the epoch still counts
            return self._step(state, micro, loss.item() * cfg.grad_accum, eval_loader, timer, total_steps, warmup, progress)
        return False

    def _step(self, state: _State, micro: int, loss: float, eval_loader, timer, total_steps, warmup, progress) -> bool:
        """Optimizer step, then bookkeeping: state, callbacks, periodic eval; True = stop early."""
        cfg = self.config
        self._optimizer_step(state.step, total_steps, warmup)
        state.step += 1
        state.batches_done = micro
        timer.end_step()
        record = {"step": state.step, "epoch": state.epoch, "loss": loss, "lr": self._current_lr()}
        state.observations["last_loss"] = loss
        for callback in self.callbacks:
            if hasattr(callback, "on_step_end"):
                callback.on_step_end(self, record)
        progress.update(1)
        progress.set_postfix(loss=f"{loss:.4f}")
        if eval_loader is not None and cfg.eval_every and state.step % cfg.eval_every == 0:
            if self._evaluate_and_track(eval_loader, state):
                return True
            self._set_modes(True)
        if cfg.save_every and state.step % cfg.save_every == 0:
            self._save_state(state)  # after this step's evaluation, so a resume never skips it
        return False

    def _optimizer_step(self, step: int, total_steps: int, warmup: int) -> None:
        factor = (step + 1) / warmup if step < warmup else max(0.0, (total_steps - step) / max(1, total_steps - warmup))
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        if self._rgn is not None:
            self._rgn.add(self.optimizer)  # before clipping: the task's own gradient
        if self.config.max_grad_norm:
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.config.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def _current_lr(self) -> float:
        return max(g["lr"] for g in self.optimizer.param_groups)

    # ------------------------------------------------------------------ resumable state
    def _save_state(self, state: _State) -> None:
        if self.state_dir is None:
            return
        save_state(self.state_dir, {
            "config": self.state_key,
            "step": state.step,
            "epoch": state.epoch,
            "batches_done": state.batches_done,
            "epoch_order": state.epoch_order,
            "rng": rng_state(),
            "plan": self.plan.to_dict(),
            "lr": self.lr,
            "trainable": self._trainable_state(),
            "optimizer": self.optimizer.state_dict(),
            "best": {k: getattr(state, k) for k in (
                "best_value", "best_step", "best_metrics", "best_weights", "evals_without_improvement", "history")},
            "rgn": {"log": state.rgn_log, "sums": self._rgn.state_dict() if self._rgn else None},
        })

    def _restore(self, saved: dict[str, Any], state: _State, train_loader) -> int:
        """Load a saved state; return how many batches of its epoch were already trained on."""
        if saved["config"] != self.state_key:
            raise FreezetuneError("the saved state belongs to a different configuration; start a new run")
        self.lr = saved["lr"]
        self._switch_plan(Plan.from_dict(saved["plan"]))
        self._build_optimizer()  # the saved optimizer state must map onto fresh groups
        self._load_trainable(saved["trainable"])
        self.optimizer.load_state_dict(saved["optimizer"])
        for key, value in saved["best"].items():
            setattr(state, key, value)
        state.rgn_log = saved["rgn"]["log"]
        if self._rgn is not None:
            self._rgn.load_state_dict(saved["rgn"]["sums"])
        state.step, state.epoch = saved["step"], saved["epoch"]
        state.batches_done, state.epoch_order = saved["batches_done"], saved["epoch_order"]
        for generator, order in zip(loader_generators(train_loader), saved["epoch_order"]):
            generator.set_state(order)
        state.resume_rng = saved["rng"]
        if state.batches_done == 0:
            set_rng_state(saved["rng"])
        return state.batches_done

    # ------------------------------------------------------------------ prefix cache
    def _cache_off_reason(self, train, epochs: int) -> str | None:
        cfg = self.config
        if cfg.cache == "off":
            return "--cache off"
        if not hasattr(train, "column_names"):
            return "training data came as ready batches, not a dataset"
        if self.frozen_prefix_depth() == 0:
            return "nothing is frozen below the first trainable unit"
        if not isinstance(self.schedule, StaticSchedule) and cfg.cache == "auto":
            return "the plan changes during training"
        if epochs < 2 and cfg.cache == "auto":
            return "a single pass over the data would not reuse it"
        return None

    def _prepare_caches(self, train, eval, epochs: int) -> str:
        """Build the caches when they pay; return a one-line status for logs and metrics."""
        reason = self._cache_off_reason(train, epochs)
        if reason is not None:
            log.info("frozen-prefix cache off: %s", reason)
            return f"off: {reason}"
        depth = self.frozen_prefix_depth()
        datasets = [d for d in (train, eval) if d is not None and hasattr(d, "column_names")]
        prefix = prefix_fingerprint(self.layers, depth)
        reused = 0
        for data in datasets:
            key = CacheKey(prefix, depth, data_fingerprint(data), self.tokenizer_name, self.config.cache_dtype)
            cache = SHARED_CACHES.get(key)
            if cache is None:
                indexed = data.add_column("index", list(range(len(data))))
                loader = self._loader(indexed, shuffle=False, seed=0, batch_size=self.config.eval_batch_size)
                lengths = [len(ids) for ids in data["input_ids"]]
                cache = build_cache(
                    self.layers, depth, loader, lengths, key, device=self.device, dtype=self.config.cache_dtype,
                    ram_limit_bytes=int(self.config.cache_ram_gb * 2**30), autocast_dtype=self.autocast_dtype,
                )
                SHARED_CACHES.put(cache, limit_bytes=int(self.config.cache_ram_gb * 2**30))
            else:
                reused += 1
            self._caches[id(data)] = cache
        size = sum(c.bytes for c in self._caches.values())
        where = "disk" if any(c.on_disk for c in self._caches.values()) else "RAM"
        status = f"on: boundary {depth}, {size / 2**20:.1f} MiB in {where} ({self.config.cache_dtype})"
        if reused:
            status += f", {reused} of {len(datasets)} reused from an earlier run"
        log.info("frozen-prefix cache %s", status)
        return status

    # ------------------------------------------------------------------ evaluation
    def _evaluate_and_track(self, loader, state: _State) -> bool:
        """Evaluate, remember the best weights; True when early stopping says stop."""
        metrics = self.evaluate(loader, cache=self._eval_cache)
        metrics.update(step=state.step, epoch=state.epoch)
        state.history.append(metrics)
        for callback in self.callbacks:
            if hasattr(callback, "on_evaluate"):
                callback.on_evaluate(self, metrics)
        value = metrics[self.config.metric]
        if is_better(self.config.metric, value, state.best_value):
            state.best_value, state.best_step, state.best_metrics = value, state.step, metrics
            state.best_weights = self._trainable_state() if self.config.keep_best else None
            state.evals_without_improvement = 0
            return False
        state.evals_without_improvement += 1
        patience = self.config.patience
        return patience is not None and state.evals_without_improvement >= patience

    @torch.no_grad()
    def predict_logits(self, data, cache: PrefixCache | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (and labels when the data has them) for a dataset or loader, in order."""
        loader = self._loader(data, shuffle=False, seed=0, batch_size=self.config.eval_batch_size)
        was_training = self.model.training
        self.model.eval()
        logits, labels = [], []
        for batch in loader:
            batch = self._to_device(batch)
            label = batch.pop("labels", None)
            logits.append(self.forward(batch, cache).float().cpu())
            if label is not None:
                labels.append(label.cpu())
        if was_training:
            self._set_modes(True)
        return torch.cat(logits), (torch.cat(labels) if labels else None)

    def evaluate(self, data, cache: PrefixCache | None = None) -> dict[str, Any]:
        """Loss, accuracy, macro-F1, MCC and a per-class report."""
        logits, labels = self.predict_logits(data, cache)
        if labels is None:
            raise FreezetuneError("evaluation data has no labels")
        names = self.label_names or [str(i) for i in range(logits.size(-1))]
        metrics = classification_metrics(labels.tolist(), logits.argmax(-1).tolist(), names)
        metrics["loss"] = nn.functional.cross_entropy(logits, labels).item()
        return metrics

    # ------------------------------------------------------------------ weights
    def _trainable_state(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().clone() for n, p in self.model.named_parameters() if p.requires_grad}

    def _load_trainable(self, weights: dict[str, torch.Tensor]) -> None:
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, value in weights.items():
                params[name].copy_(value)


def _checkpointed(forward, *args, **kwargs):
    if torch.is_grad_enabled():
        return torch.utils.checkpoint.checkpoint(forward, *args, use_reentrant=False, **kwargs)
    return forward(*args, **kwargs)


def _pick_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def _autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    if precision == "fp32":
        return None
    supported = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if precision == "bf16" and not supported:
        raise FreezetuneError("--precision bf16 needs a GPU with bf16 support; use auto or fp32")
    return torch.bfloat16 if supported else None


def _progress(total: int, enabled: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, leave=False, dynamic_ncols=True)
