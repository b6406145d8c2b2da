"""Tolerances for comparing two code paths that should compute the same thing.

Two paths that differ only in floating-point rounding (a cached prefix against a recomputed one,
other padding, another reduction order) drift apart by a few units of the dtype's epsilon per
operation they round differently. Through training that drift compounds: Adam divides each gradient
by its own running scale, so a relative error in the gradients becomes a relative error of the same
size in every update, and the weights' difference grows about linearly with the optimizer steps.

A real bug instead moves an Adam update by the order of the learning rate itself (a stale cache
feeds the suffix other hidden states), which these bounds stay far below.
"""

import torch

# Rounding differences per forward-and-backward pass, in epsilons, for the tiny models of the tests:
# a handful of blocks whose reductions sum over up to a few hundred terms.
ROUNDING_PER_STEP = 100


def forward_atol(dtype: torch.dtype = torch.float32) -> float:
    """Outputs of order 1 through one forward pass of a few blocks: 100 eps (fp32: 1.2e-5)."""
    return ROUNDING_PER_STEP * torch.finfo(dtype).eps


def trained_atol(steps: int, dtype: torch.dtype = torch.float32) -> float:
    """Weights of order 1 after ``steps`` optimizer steps on two such paths: 100 eps per step.

    fp32, 15 steps: 1.8e-4. Measured for the decoder cache tests: 2.4e-6 to 3.6e-6, 50x below;
    a stale prefix shifts each update by about the learning rate (3e-3 there), 17x above.
    """
    return ROUNDING_PER_STEP * torch.finfo(dtype).eps * steps
