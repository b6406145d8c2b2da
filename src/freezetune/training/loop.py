"""The training loop: epochs of steps, periodic evaluation, early stopping, resumable state.

One :class:`Loop` runs one fit. It asks the schedule for the plan before every batch, lets the
task split the batch and compute the loss, accumulates gradients, steps the optimizer at the
rate the pure LR schedule gives, and tells the callbacks what happened. A non-finite loss stops
it before the optimizer step, so no NaN ever reaches the weights or a saved state; a signal
stops it after the step in progress, with a resumable state saved there (interrupts.py).
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

import torch

from freezetune.core.errors import FreezetuneError, Interrupted
from freezetune.core.memory import TRIM_EVERY, release_free_memory
from freezetune.measure.costs import StepTimer
from freezetune.measure.metrics import is_better
from freezetune.training.audit import StepAudit
from freezetune.training.callbacks import KEEPS_SKILL
from freezetune.training.interrupts import InterruptFlag
from freezetune.training.lr_schedule import lr_factor
from freezetune.training.resume import loader_generators, save_state, set_rng_state, snapshot
from freezetune.training.state import TrainState

if TYPE_CHECKING:  # typing only: the Finetuner imports this module
    from freezetune.training.finetuner import Finetuner


class Loop:
    def __init__(self, tuner: Finetuner, state: TrainState, *, total_steps: int, warmup: int, eval_loader,
                 timer: StepTimer, progress, interrupt: InterruptFlag | None = None):
        self.tuner, self.state = tuner, state
        self.total_steps, self.warmup = total_steps, warmup
        self.eval_loader, self.timer, self.progress = eval_loader, timer, progress
        self.config = tuner.config
        self.interrupt = interrupt
        # Time spent by earlier processes of a resumed run counts in this one's costs.
        self.started = time.perf_counter()
        timer.epoch_times[:0] = state.elapsed["epoch_times_s"]
        self.carried_epoch_s = state.elapsed["epoch_s"]  # the resumed epoch's time before the interruption

    def run(self, train_loader, epochs: int, skip: int) -> bool:
        """Train until ``total_steps``; True when early stopping ended it before that."""
        state, tuner = self.state, self.tuner
        for epoch in range(state.epoch, epochs):
            state.epoch = epoch
            if skip == 0:  # a resumed epoch replays the order saved for it
                state.epoch_order = [g.get_state() for g in loader_generators(train_loader)]
            self.timer.start_epoch()
            stop = self.epoch(train_loader, skip)
            skip = 0
            self.timer.end_epoch()
            self.timer.epoch_times[-1] += self.carried_epoch_s
            self.carried_epoch_s = 0.0
            for callback in tuner.callbacks:
                callback.on_epoch_end(tuner, state, self.total_steps)
            if self.eval_loader is not None and self.config.eval_every is None:
                stop = self.evaluate() or stop
            if stop or state.step >= self.total_steps:
                return stop and state.step < self.total_steps
            state.epoch, state.batches_done = epoch + 1, 0
            state.epoch_order = [g.get_state() for g in loader_generators(train_loader)]
            self.save()
        return False

    def epoch(self, loader, skip: int = 0) -> bool:
        tuner, state, cfg = self.tuner, self.state, self.config
        tuner.set_modes(True)
        micro = skip  # batches of this epoch consumed
        pending = 0  # batches whose gradients await an optimizer step
        batches = iter(loader)
        if skip:
            for _ in range(skip):  # replay the saved order up to where the run stopped
                next(batches)
            set_rng_state(state.resume_rng)
        self.timer.start_step()
        loss = summed = None  # summed: this step's losses, to catch a NaN in any accumulated batch
        for batch in batches:
            plan = tuner.schedule.plan_at(state.step, state.epoch, state.observations)
            if plan != tuner.plan:
                tuner.switch_plan(plan)
            share = batch.pop("shard_weight", None)  # data-parallel: this rank's share of the global batch
            inputs, targets = tuner.task.split(tuner.to_device(batch))
            outputs = tuner.forward(inputs, tuner.train_cache)
            loss = tuner.task.loss(outputs, targets) / cfg.grad_accum
            (loss if share is None else loss * share.item()).backward()
            summed = loss.detach() if summed is None else summed + loss.detach()
            micro += 1
            pending += 1
            if pending < cfg.grad_accum:
                continue
            pending = 0
            self.check_finite(summed)
            summed = None
            if self.step(micro, loss.item() * cfg.grad_accum):
                return True
            if state.step >= self.total_steps:
                return False
            self.timer.start_step()
        if pending:  # a partial accumulation at the end of the epoch still counts
            self.check_finite(summed)
            return self.step(micro, loss.item() * cfg.grad_accum)
        return False

    def check_finite(self, loss: torch.Tensor) -> None:
        """Stop before a NaN or inf loss updates the weights; the last saved state stays good.

        Under data parallelism every rank stops when one rank's loss is not finite.
        """
        value = float(loss)
        if self.tuner.ranks.largest(0.0 if math.isfinite(value) else 1.0):
            shown = value if not math.isfinite(value) else "not finite on another process"
            raise FreezetuneError(
                f"the loss is {shown} at step {self.state.step + 1}: training diverged; lower --lr, set "
                "--max-grad-norm 1.0, or check the data for broken rows (nothing was saved after the last good step)"
            )

    def step(self, micro: int, loss: float) -> bool:
        """Optimizer step, then bookkeeping: state, callbacks, periodic eval; True = stop early."""
        tuner, state, cfg = self.tuner, self.state, self.config
        self.optimizer_step(state.step)
        state.step += 1
        state.batches_done = micro
        self.timer.end_step()
        record = {"step": state.step, "epoch": state.epoch, "loss": loss, "lr": tuner.current_lr()}
        state.observations["last_loss"] = loss
        for callback in tuner.callbacks:
            callback.on_step_end(tuner, record)
        self.progress.update(1)
        self.progress.set_postfix(loss=f"{loss:.4f}")
        if state.step % TRIM_EVERY == 0:
            release_free_memory()  # freed batch buffers the C heap would otherwise keep (core/memory.py)
        if self.eval_loader is not None and cfg.eval_every and state.step % cfg.eval_every == 0:
            if self.evaluate():
                return True
            tuner.set_modes(True)
        # SIGINT/SIGTERM on any rank stops every rank after the same step
        signum = int(tuner.ranks.largest((self.interrupt.signum or 0) if self.interrupt is not None else 0))
        if signum or (cfg.save_every and state.step % cfg.save_every == 0):
            self.save()  # after this step's evaluation, so a resume never skips it
        if signum:
            raise Interrupted(signum, state.step)
        return False

    def optimizer_step(self, step: int) -> None:
        tuner = self.tuner
        factor = lr_factor(step, self.total_steps, self.warmup)
        for group in tuner.optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        tuner.ranks.average_gradients(tuner.model.parameters())  # no-op in a single process
        for callback in tuner.callbacks:
            callback.before_optimizer_step(tuner)  # before clipping: the task's own gradient
        if self.config.max_grad_norm:
            params = [p for g in tuner.optimizer.param_groups for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.config.max_grad_norm)
        audit = StepAudit.before_step(tuner.model, tuner.layers, tuner.plan, tuner.optimizer) if step == 0 else None
        tuner.optimizer.step()
        if audit is not None:  # the fit's first step: did what the plan trains really train? (audit.py)
            audit.after_step(tuner.model)
        tuner.optimizer.zero_grad(set_to_none=True)

    def evaluate(self) -> bool:
        """Evaluate, remember the best weights; True when early stopping says stop."""
        tuner, state, cfg = self.tuner, self.state, self.config
        metrics = tuner.evaluate(self.eval_loader, cache=tuner.eval_cache)
        if cfg.metric not in metrics:
            raise FreezetuneError(f"--metric {cfg.metric} is not one of this task's metrics ({', '.join(metrics)})")
        metrics.update(step=state.step, epoch=state.epoch)
        state.history.append(metrics)
        for callback in tuner.callbacks:
            callback.on_evaluate(tuner, metrics)
        if not metrics.get(KEEPS_SKILL, True):  # a retention floor broke (scoring/retention_guard.py)
            if not state.best_metrics:  # the first evaluation already: the earliest weights, usually the most skill
                self.remember(metrics)
            return True  # training longer mostly moves further from the base
        if is_better(cfg.metric, metrics[cfg.metric], state.best_value, tuner.task.directions):
            self.remember(metrics)
            state.evals_without_improvement = 0
            return False
        state.evals_without_improvement += 1
        return cfg.patience is not None and state.evals_without_improvement >= cfg.patience

    def remember(self, metrics: dict) -> None:
        """This evaluation is the best so far: its metrics, and its weights with keep_best."""
        state, tuner = self.state, self.tuner
        state.best_value, state.best_step, state.best_metrics = metrics[self.config.metric], state.step, metrics
        state.best_weights = tuner.trainable_state() if self.config.keep_best else None

    def save(self) -> None:
        if self.tuner.state_dir is not None:
            save_state(self.tuner.state_dir, snapshot(self.tuner, self.state, self.elapsed()))

    def elapsed(self) -> dict[str, Any]:
        """Training time so far, earlier processes of a resumed run included."""
        return {"train_time_s": self.state.elapsed["train_time_s"] + time.perf_counter() - self.started,
                "epoch_times_s": list(self.timer.epoch_times),
                "epoch_s": self.carried_epoch_s + self.timer.epoch_elapsed()}
