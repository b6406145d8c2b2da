"""Scoring: per-block scores, selection under a budget, and the measuring strategies.

Importing the package registers ``auto`` and ``auto_rgn`` in the strategy registry.
"""

from freezetune.scoring.auto import auto_plan
from freezetune.scoring.autofreeze import AutoFreeze
from freezetune.scoring.cost import full_step_seconds, run_estimate
from freezetune.scoring.resolve import Resolution, callbacks_for, resolve_strategy
from freezetune.scoring.result import LayerScores
from freezetune.scoring.rgn import RgnCallback
from freezetune.scoring.sample import DEFAULT_SAMPLES, sample_batches
from freezetune.scoring.scorers import SCORERS, TENSOR_SCORERS, score
from freezetune.scoring.select import explain, explain_tensors, select_blocks, select_tensors

__all__ = [
    "AutoFreeze", "DEFAULT_SAMPLES", "LayerScores", "Resolution", "RgnCallback", "SCORERS", "TENSOR_SCORERS",
    "auto_plan",
    "callbacks_for", "explain", "explain_tensors", "full_step_seconds", "resolve_strategy", "run_estimate",
    "sample_batches", "score", "select_blocks", "select_tensors",
]
