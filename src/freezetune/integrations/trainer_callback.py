"""``FreezetuneCallback``: freezetune's plans and schedules inside ``transformers.Trainer`` (and TRL's trainers).

    trainer = Trainer(model, args, train_dataset=data, callbacks=[FreezetuneCallback("lisa:gamma=2:interval=20")])

What happens when (the Trainer's own events):

* ``on_init_end`` (in ``Trainer.__init__``, before the optimizer exists): the spec is resolved on the
  model's layout; a static plan is applied (LoRA adapters added in place), a schedule or ``auto``
  opens every tensor it may train, so that ``create_optimizer`` puts them all in the optimizer;
* ``on_train_begin``: ``auto`` scores a seeded sample of the trainer's training set (collated by
  its own collator) and picks its plan; the optimizer is narrowed to the tensors some plan of the
  run trains and split by the plans' rate multipliers (trainer_optimizer.py);
* ``on_step_begin`` (before each optimizer step's first micro-batch): the schedule gives the plan
  of the step, as in freezetune's loop; on a change ``requires_grad`` follows it, tensors that stop
  training lose their optimizer state, and the change is logged (log line, ``trainer_state.json``'s
  log history, the next logged entry, and TensorBoard scalars under ``freezetune/``);
* the first optimizer step is audited (``training/audit.py``): a tensor the plan trains that got
  no gradient or did not move stops the run with one line naming it and the likely cause.

The frozen prefix (the embeddings and the blocks below the lowest trainable one, when the
embeddings are frozen) runs in eval mode, as in freezetune's loop: no dropout where nothing learns.
AutoFreeze measures the gradients the optimizer is given, which are clipped when
``max_grad_norm`` is set (freezetune's loop measures them before clipping).
"""

from __future__ import annotations

import logging
import math
import os
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from transformers import TrainerCallback

from freezetune.core.errors import FreezetuneError
from freezetune.core.layout import LayerMap
from freezetune.core.lora import add_lora
from freezetune.core.plan import Plan
from freezetune.integrations import trainer_optimizer
from freezetune.integrations.plan_text import blocks_line
from freezetune.integrations.resolution import BATCH_KEYS, explained, resolve_on
from freezetune.scoring.sample import DEFAULT_SAMPLES
from freezetune.strategies.registry import needs_context
from freezetune.strategies.schedules import Schedule, StaticSchedule
from freezetune.tasks.task import Task
from freezetune.training.audit import StepAudit, planned_names
from freezetune.training.callbacks import Callback

log = logging.getLogger("freezetune")


class FreezetuneCallback(TrainerCallback):
    """Train where ``strategy`` says: a plan spec, a :class:`Plan`, a schedule (``lift``, ``gradual_unfreeze``,
    ``lisa``, ``autofreeze``, ``hft``) or ``auto`` (scored on ``samples`` seeded rows of the training set)."""

    def __init__(self, strategy: str | Plan | Schedule = "auto", *, samples: int = DEFAULT_SAMPLES, seed: int = 0,
                 task: Task | None = None, audit: bool = True):
        self.strategy, self.samples, self.seed, self.task = strategy, samples, seed, task
        self.audit_first_step = audit
        self.model: torch.nn.Module | None = None
        self.layers: LayerMap | None = None
        self.schedule: Schedule | None = None  # None until `auto` has scored the training set
        self.plan: Plan | None = None
        self.trained: set[str] = set()  # every tensor that trained at some step
        self.changes: list[dict[str, Any]] = []  # per plan change: step, plan, blocks, trainable
        self.selection = ""  # auto's explanation of its choice
        self.epoch = 0
        self._audit: StepAudit | None = None
        self._pending_logs: dict[str, Any] = {}
        self._writer = None
        self._hook = None

    # ------------------------------------------------------------------ before the optimizer exists
    def on_init_end(self, args, state, control, model=None, **kwargs):
        self._set_up(model)

    def _set_up(self, model) -> None:
        self.model, self.layers = model, LayerMap.from_model(model)
        if needs_context(self.strategy):
            self._open({n for names in self.layers.units.values() for n in names})  # auto may choose any of them
        else:
            resolved, _ = resolve_on(model, self.strategy)
            self.schedule = StaticSchedule(resolved) if isinstance(resolved, Plan) else resolved
            first = self.schedule.plan_at(0, 0, {})
            if first.lora is not None:  # adapters must exist before the optimizer is made
                self.model, self.layers = add_lora(model, first.lora, self.layers)
            static = isinstance(self.schedule, StaticSchedule)
            self._open(planned_names(model, self.layers, first) if static else self._reachable())
        self._hook = model.register_forward_pre_hook(self._frozen_prefix_in_eval)

    def _reachable(self) -> set[str]:
        """Before the run's length is known: every tensor a schedule may train (narrowed at on_train_begin)."""
        names = {n for names in self.layers.units.values() for n in names}
        return names | {n for n, _ in self.model.named_parameters() if "lora_" in n}

    def _open(self, names: set[str]) -> None:
        for name, param in self.model.named_parameters():
            param.requires_grad_(name in names)

    # ------------------------------------------------------------------ the run starts
    def on_train_begin(self, args, state, control, model=None, optimizer=None, lr_scheduler=None,
                       train_dataloader=None, **kwargs):
        if self.layers is None:  # added with trainer.add_callback after __init__: the optimizer was made already
            self._set_up(model)
        if self.schedule is None:
            self._choose(args, train_dataloader)
        plans = self._run_plans(args, state, train_dataloader)
        union = set().union(*(planned_names(self.model, self.layers, p) for p in plans))
        params = dict(self.model.named_parameters())
        if optimizer is not None:
            trainer_optimizer.narrow(optimizer, {id(p): n for n, p in params.items() if n in union})
            rates = {plan.lr_multipliers for plan in plans}
            if len(rates) > 1:
                raise FreezetuneError("the plans of this schedule give blocks different rates over time; the Trainer "
                                      "keeps one rate per tensor: train it with freezetune.Finetuner")
            if any(m != 1.0 for _, m in next(iter(rates))):
                plan = plans[0]
                units = {id(p): self.layers.unit_for(n) for n, p in params.items()}
                trainer_optimizer.split_by_rate(optimizer, lr_scheduler,
                                                lambda p: plan.lr_multiplier(units.get(id(p), "head")))
        self._open(set())  # every tensor frozen until the first step's plan opens its own
        self.epoch = round(state.epoch or 0)
        self._switch(self.schedule.plan_at(state.global_step, self.epoch, {}), state, optimizer)
        if "tensorboard" in (args.report_to or []) and state.is_world_process_zero:
            self._writer = _tensorboard_writer(args)
            self._write_tensorboard(state.global_step)

    def _choose(self, args, dataloader) -> None:
        """``auto``: score a seeded sample of the training set, collated as the Trainer collates it."""
        if dataloader is None:
            raise FreezetuneError("auto scores the training set: give the Trainer a train_dataset")
        batches = _sample(dataloader, self.samples, self.seed, args.per_device_train_batch_size)
        plan, selections = resolve_on(self.model, self.strategy, sample=batches, task=self.task,
                                      samples=self.samples, seed=self.seed)
        if plan.lora is not None:
            raise FreezetuneError(f"{self.strategy} chose LoRA ({plan.spec}), whose adapters must exist before the "
                                  "Trainer makes its optimizer: run freezetune.apply(model, ..., sample=...) before "
                                  "building the Trainer and train without the callback")
        self.selection = explained(selections)
        log.info("%s", self.selection)
        self.schedule = StaticSchedule(plan)

    def _run_plans(self, args, state, dataloader) -> list[Plan]:
        """The plans the run will visit: read ahead over every step when they depend on the step alone."""
        first = self.schedule.plan_at(0, 0, {})
        if isinstance(self.schedule, StaticSchedule):
            return [first]
        if not getattr(self.schedule, "step_determined", False) or dataloader is None:
            return [first, *[p for p in [_everything(self.layers)] if p != first]]
        per_epoch = max(1, math.ceil(len(dataloader) / args.gradient_accumulation_steps))
        seen: dict[Plan, None] = {}
        for step in range(state.max_steps):
            seen.setdefault(self.schedule.plan_at(step, step // per_epoch, {}), None)
        return list(seen)

    # ------------------------------------------------------------------ every step
    def on_epoch_begin(self, args, state, control, **kwargs):
        self.epoch = round(state.epoch or 0)  # epochs completed: exact at an epoch's start

    def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
        plan = self.schedule.plan_at(state.global_step, self.epoch, {})
        if plan != self.plan:
            self._switch(plan, state, optimizer)
            control.should_log = getattr(args.logging_strategy, "value", args.logging_strategy) != "no"  # logged now

    def _switch(self, plan: Plan, state, optimizer) -> None:
        if plan.lora is not None and not any("lora_" in n for n, _ in self.model.named_parameters()):
            raise FreezetuneError(f"plan {plan.spec!r} adds LoRA adapters mid-run, after the optimizer was made")
        before = {n for n, p in self.model.named_parameters() if p.requires_grad}
        plan.apply(self.model, self.layers)
        params = dict(self.model.named_parameters())
        now = {n for n, p in params.items() if p.requires_grad}
        if optimizer is not None:
            trainer_optimizer.drop_state(optimizer, [params[n] for n in before - now])
        self.trained |= now
        old, self.plan = self.plan, plan
        record = {"step": state.global_step, "plan": plan.spec, "blocks": blocks_line(plan, self.layers),
                  "trainable": sum(params[n].numel() for n in now)}
        self.changes.append(record)
        log.info("freezetune: step %d: %s trains (%s, %s parameters)%s", record["step"], record["blocks"], plan.spec,
                 f"{record['trainable']:,}", f"; was {old.spec}" if old is not None else "")
        state.log_history.append({"freezetune/plan": plan.spec, "freezetune/trains": record["blocks"],
                                  "freezetune/trainable_params": record["trainable"], "step": state.global_step})
        self._pending_logs = {"freezetune/trains": record["blocks"],
                              "freezetune/trainable_params": record["trainable"]}
        if self._writer is not None:
            self._write_tensorboard(state.global_step)

    def _frozen_prefix_in_eval(self, module, args) -> None:
        """Trainer puts the whole model in train mode each step; the frozen prefix stays in eval mode."""
        if module.training and self.plan is not None and not self.plan.embeddings:
            for part in self.layers.prefix_modules(self.plan.frozen_prefix_depth(self.layers.num_blocks)):
                part.eval()

    def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        if isinstance(self.schedule, Callback):  # AutoFreeze measures the gradients of the step
            self.schedule.before_optimizer_step(SimpleNamespace(model=self.model, layers=self.layers))
        if self.audit_first_step and self._audit is None and optimizer is not None:
            if any(group.get("lr") for group in optimizer.param_groups):  # a warm-up from 0 moves nothing yet
                self._audit = StepAudit.before_step(self.model, self.layers, self.plan, optimizer)

    def on_optimizer_step(self, args, state, control, **kwargs):
        if self._audit is not None and self.audit_first_step:
            self.audit_first_step = False
            self._audit.after_step(self.model)

    def on_step_end(self, args, state, control, **kwargs):
        if isinstance(self.schedule, Callback):
            self.schedule.on_step_end(SimpleNamespace(model=self.model, layers=self.layers),
                                      {"step": state.global_step, "epoch": self.epoch})

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is not None and self._pending_logs:
            logs.update(self._pending_logs)  # the console and later callbacks see what trains now
            self._pending_logs = {}

    def on_train_end(self, args, state, control, **kwargs):
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # ------------------------------------------------------------------ TensorBoard
    def _write_tensorboard(self, step: int) -> None:
        blocks = set(self.plan.trainable_blocks(self.layers.num_blocks))
        self._writer.add_scalar("freezetune/trainable_params", self.changes[-1]["trainable"], step)
        self._writer.add_scalar("freezetune/trainable_blocks", len(blocks), step)
        for index in range(self.layers.num_blocks):
            self._writer.add_scalar(f"freezetune/block_{index:02d}", float(index in blocks), step)
        self._writer.add_text("freezetune/plan", f"{self.plan.spec}: {self.changes[-1]['blocks']}", step)
        self._writer.flush()


def _everything(layers: LayerMap) -> Plan:
    return Plan(blocks=tuple(range(layers.num_blocks)), embeddings=True, spec="full")


def _sample(dataloader, size: int, seed: int, batch_size: int) -> list[dict]:
    """A seeded sample of the loader's dataset, collated by the loader's own collator (labels as it makes them)."""
    dataset, collate = dataloader.dataset, dataloader.collate_fn
    if not hasattr(dataset, "__len__") or len(dataset) == 0:
        raise FreezetuneError("auto scores a sample of the training set, which must be a sized, non-empty dataset")
    picked = np.sort(np.random.default_rng(seed).permutation(len(dataset))[: min(size, len(dataset))])
    batches = []
    for start in range(0, len(picked), batch_size):
        batch = collate([dataset[int(i)] for i in picked[start:start + batch_size]])
        batches.append({k: torch.as_tensor(v) for k, v in batch.items() if k in BATCH_KEYS})
    if "labels" not in batches[0]:
        raise FreezetuneError("auto scores labelled rows: the trainer's collator gives batches without 'labels'")
    return batches


def _tensorboard_writer(args):
    from torch.utils.tensorboard import SummaryWriter

    folder = os.getenv("TENSORBOARD_LOGGING_DIR") or os.path.join(args.output_dir, "runs")
    return SummaryWriter(log_dir=os.path.join(folder, "freezetune"))
