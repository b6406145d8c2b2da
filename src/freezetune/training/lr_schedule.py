"""The learning-rate schedule as a pure function of the step: linear warm-up, then linear decay to 0.

Being pure, it needs nothing saved to resume: the step alone gives the rate.
"""

from __future__ import annotations


def warmup_steps(warmup_ratio: float, total_steps: int) -> int:
    return int(warmup_ratio * total_steps)


def lr_factor(step: int, total_steps: int, warmup: int) -> float:
    """The multiplier of every group's base rate for optimizer step ``step`` (0-based)."""
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup))
