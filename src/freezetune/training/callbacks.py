"""The ``Callback`` protocol: what the training loop tells the outside world, and when.

Subclass :class:`Callback` and override what you need; every hook has a no-op default, so the
loop calls each hook on every callback without probing. A callback with state that must
survive an interruption returns it from ``state_dict`` (saved with the resumable state).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from freezetune.core.plan import Plan

# An evaluation whose metrics a callback sets this key False in (it broke a constraint, such as a
# retention floor) is never kept as the best, and it ends the run.
KEEPS_SKILL = "keeps_skill"

if TYPE_CHECKING:  # typing only: the Finetuner imports this module
    from freezetune.training.finetuner import Finetuner
    from freezetune.training.state import FitResult, TrainState


class Callback:
    def on_fit_start(self, tuner: Finetuner) -> None:
        """Before the first step (and before a resumed run restores its state)."""

    def on_plan_change(self, tuner: Finetuner, old: Plan | None, new: Plan) -> None:
        """After ``requires_grad`` and the optimizer follow a new plan (``old`` is None at the start)."""

    def before_optimizer_step(self, tuner: Finetuner) -> None:
        """Gradients are complete and not yet clipped; the step's rates are set."""

    def on_step_end(self, tuner: Finetuner, record: dict[str, Any]) -> None:
        """After an optimizer step: ``record`` holds step, epoch, loss and lr."""

    def on_epoch_end(self, tuner: Finetuner, state: TrainState, total_steps: int) -> None:
        """After an epoch's last step, before its evaluation."""

    def on_evaluate(self, tuner: Finetuner, metrics: dict[str, Any]) -> None:
        """After an evaluation; ``metrics`` carries its step and epoch (set ``KEEPS_SKILL`` False to veto it)."""

    def on_fit_end(self, tuner: Finetuner, result: FitResult) -> None:
        """Training is over; ``result.costs`` may still be extended."""

    def state_dict(self) -> Any:
        return None

    def load_state_dict(self, state: Any) -> None:
        """Restore what ``state_dict`` returned."""


def checked(callbacks) -> list[Callback]:
    """The callbacks as a list, each a :class:`Callback` (a clear error otherwise)."""
    out = list(callbacks)
    for callback in out:
        if not isinstance(callback, Callback):
            raise TypeError(f"{type(callback).__name__} is not a freezetune Callback: subclass freezetune.Callback")
    return out
