"""Resumable training state: enough to continue a run as if it had never stopped.

Saved after an optimizer step: the trained tensors, the optimizer, the position in the data
order (the shuffling generator's state at the start of the epoch plus the batches consumed),
every RNG the step consumed (torch, CUDA, Python, NumPy), the plan, and the early-stopping
bookkeeping. The learning-rate schedule is a pure function of the step, so the step is all
it needs. Resuming replays the epoch's order, skips the consumed batches and restores the
RNGs, so on a CPU the final weights are bit-identical to an uninterrupted run.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from freezetune.core.errors import FreezetuneError

STATE_FILE = "state.pt"
FORMAT = 1


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
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / STATE_FILE
    temporary = folder / f".{STATE_FILE}.tmp"
    torch.save({"format": FORMAT, **state}, temporary)
    os.replace(temporary, target)
    return target


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
