"""Resumable training state: enough to continue a run as if it had never stopped.

Saved after an optimizer step: the trained tensors, the optimizer, the position in the data
order (the shuffling generator's state at the start of the epoch plus the batches consumed),
every RNG the step consumed (torch, CUDA, Python, NumPy), the plan, and the early-stopping
bookkeeping. The learning-rate schedule is a pure function of the step, so the step is all
it needs. Resuming replays the epoch's order, skips the consumed batches and restores the
RNGs, so on a CPU the final weights are bit-identical to an uninterrupted run.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from freezetune.core.errors import FreezetuneError
from freezetune.core.helpers import atomic_write
from freezetune.core.plan import Plan
from freezetune.training.state import TrainState

if TYPE_CHECKING:  # typing only: the Finetuner imports this module
    from freezetune.training.finetuner import Finetuner

STATE_FILE = "state.pt"
FORMAT = 2  # 2: callbacks keep their own state (Auto-RGN's sums moved into its callback)


def loader_generators(loader) -> list[torch.Generator]:
    """The generators that decide a loader's order (plain shuffling or bucketed batches)."""
    found = [getattr(loader, "generator", None), getattr(getattr(loader, "batch_sampler", None), "generator", None)]
    return [g for g in found if isinstance(g, torch.Generator)]


def rng_state() -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": random.getstate(),
        "numpy": np.random.get_state(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])


def save_state(folder: str | Path, state: dict[str, Any]) -> Path:
    """Write atomically: a run killed while saving keeps its previous state."""
    return atomic_write(Path(folder) / STATE_FILE, lambda handle: torch.save({"format": FORMAT, **state}, handle),
                        binary=True)


def snapshot(tuner: Finetuner, state: TrainState) -> dict[str, Any]:
    """Everything needed to continue ``tuner``'s fit exactly where it is (after an optimizer step)."""
    return {
        "config": tuner.state_key,
        "step": state.step,
        "epoch": state.epoch,
        "batches_done": state.batches_done,
        "epoch_order": state.epoch_order,
        "rng": rng_state(),
        "plan": tuner.plan.to_dict(),
        "lr": tuner.lr,
        "trained_names": sorted(tuner.trained),
        "trainable": tuner.trainable_state(),
        "optimizer": tuner.optimizer.state_dict(),
        "best": {k: getattr(state, k) for k in TrainState.BEST_FIELDS},
        "callbacks": {key: callback.state_dict() for key, callback in _keyed(tuner.callbacks).items()},
    }


def restore(tuner: Finetuner, saved: dict[str, Any], state: TrainState, train_loader) -> int:
    """Load a saved state into ``tuner`` and ``state``; return how many batches of its epoch were trained on."""
    if saved["config"] != tuner.state_key:
        raise FreezetuneError("the saved state belongs to a different configuration; start a new run")
    tuner.lr = saved["lr"]
    tuner.switch_plan(Plan.from_dict(saved["plan"]))
    tuner.build_optimizer()  # the saved optimizer state must map onto fresh groups
    tuner.trained.update(saved["trained_names"])
    tuner.load_trainable(saved["trainable"])
    tuner.optimizer.load_state_dict(saved["optimizer"])
    for key, value in saved["best"].items():
        setattr(state, key, value)
    for key, callback in _keyed(tuner.callbacks).items():
        if saved["callbacks"].get(key) is not None:
            callback.load_state_dict(saved["callbacks"][key])
    state.step, state.epoch = saved["step"], saved["epoch"]
    state.batches_done, state.epoch_order = saved["batches_done"], saved["epoch_order"]
    for generator, order in zip(loader_generators(train_loader), saved["epoch_order"]):
        generator.set_state(order)
    state.resume_rng = saved["rng"]
    if state.batches_done == 0:
        set_rng_state(saved["rng"])
    return state.batches_done


def load_state(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / STATE_FILE
    if not path.is_file():
        raise FreezetuneError(f"{folder} holds no resumable state ({STATE_FILE}); it finished or never saved one")
    try:
        state = torch.load(path, weights_only=False)
    except Exception as error:  # a truncated or foreign file
        raise FreezetuneError(f"cannot read {path}: {type(error).__name__}; the state is corrupted") from None
    if state.get("format") != FORMAT:
        raise FreezetuneError(f"{path} was written by an incompatible freezetune version")
    return state


def changed_settings(saved: dict[str, Any], current: dict[str, Any], ignore: set[str]) -> list[str]:
    """Settings that differ between the interrupted run and the resuming one."""
    keys = sorted((set(saved) | set(current)) - ignore)
    return [f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in keys if saved.get(k) != current.get(k)]


def _keyed(callbacks) -> dict[str, Any]:
    """Callbacks by class name and occurrence, so a resumed run may add or drop stateless ones."""
    keyed: dict[str, Any] = {}
    for callback in callbacks:
        name = type(callback).__qualname__
        keyed[f"{name}#{sum(k.startswith(name + '#') for k in keyed)}"] = callback
    return keyed
