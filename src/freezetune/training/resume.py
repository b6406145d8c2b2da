"""Resumable training state: enough to continue a run as if it had never stopped.

Saved after an optimizer step: the trained tensors, the optimizer, the position in the data
order (the shuffling generator's state at the start of the epoch plus the batches consumed),
every RNG the step consumed (torch, CUDA, Python, NumPy), the plan, and the early-stopping
bookkeeping. The learning-rate schedule is a pure function of the step, so the step is all
it needs. Resuming replays the epoch's order, skips the consumed batches and restores the
RNGs, so on a CPU the final weights are bit-identical to an uninterrupted run.

On disk it is ``state.json`` (step, plan, RNG states of Python and NumPy, bookkeeping, callback
state) and a safetensors file of the tensors (trained weights, optimizer moments, torch RNG
states): see io/state_file.py. Nothing is unpickled, so a state file cannot run code.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from freezetune.core.errors import FreezetuneError
from freezetune.core.plan import Plan
from freezetune.io.state_file import load_tree, save_tree
from freezetune.training.state import TrainState

if TYPE_CHECKING:  # typing only: the Finetuner imports this module
    from freezetune.training.finetuner import Finetuner

STATE = "state"  # state.json + state-<token>.safetensors
OLD_STATE_FILE = "state.pt"  # formats 1 and 2 were pickled; never read
FORMAT = 3  # 3: safetensors + JSON, elapsed times; 2: callbacks keep their own state


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
    return save_tree(folder, STATE, state, format=FORMAT)


def snapshot(tuner: Finetuner, state: TrainState, elapsed: dict[str, Any]) -> dict[str, Any]:
    """Everything needed to continue ``tuner``'s fit exactly where it is (after an optimizer step).

    ``elapsed`` holds the training time spent so far, so a resumed run's costs add it up.
    """
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
        "elapsed": elapsed,
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
    state.elapsed = saved["elapsed"]
    if state.batches_done == 0:
        set_rng_state(saved["rng"])
    return state.batches_done


def has_state(folder: str | Path) -> bool:
    """Whether ``folder`` holds a resumable state of any version (an old one is refused by ``load_state``)."""
    return (Path(folder) / f"{STATE}.json").is_file() or (Path(folder) / OLD_STATE_FILE).is_file()


def load_state(folder: str | Path) -> dict[str, Any]:
    folder = Path(folder)
    if not (folder / f"{STATE}.json").is_file():
        if (folder / OLD_STATE_FILE).is_file():
            raise FreezetuneError(f"{folder / OLD_STATE_FILE} was written by an older freezetune version, whose "
                                  "resumable state is no longer read; start the run again (--overwrite)")
        raise FreezetuneError(f"{folder} holds no resumable state ({STATE}.json); it finished or never saved one")
    version, state = load_tree(folder, STATE)
    if version != FORMAT:
        raise FreezetuneError(f"{folder / STATE}.json was written by an incompatible freezetune version; "
                              "start the run again (--overwrite)")
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
