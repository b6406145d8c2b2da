"""Activation checkpointing of the trainable blocks only.

Hugging Face's ``gradient_checkpointing_enable`` wraps every block and, with the reentrant
variant, needs ``enable_input_require_grads``, which drags backward down through a frozen
prefix and erases its saving. Non-reentrant checkpointing of the suffix blocks needs neither.
"""

from __future__ import annotations

import functools

import torch
import torch.utils.checkpoint

from freezetune.core.layout import LayerMap


def checkpoint_suffix(layers: LayerMap, depth: int) -> None:
    """Blocks ``depth..L-1`` recompute their activations in backward; blocks below run plainly."""
    for index, block in enumerate(layers.blocks):
        original = block.__dict__.pop("_unwrapped_forward", None) or block.forward
        if index >= depth:
            block._unwrapped_forward = original
            block.forward = functools.partial(_checkpointed, original)
        else:
            block.forward = original


def _checkpointed(forward, *args, **kwargs):
    if torch.is_grad_enabled():
        return torch.utils.checkpoint.checkpoint(forward, *args, use_reentrant=False, **kwargs)
    return forward(*args, **kwargs)
