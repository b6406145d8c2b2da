"""Hidden states at chosen block boundaries, in one forward that stops at the deepest of them.

The prefix cache stores them for training; the server runs a shared frozen trunk once and hands
each task its own boundary. Boundary d is block d's input; boundary L is what the last block returns.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn


class _Stop(Exception):
    """Raised by the capture hook: nothing above the deepest boundary needs to run."""


@contextlib.contextmanager
def boundary_states(blocks: Sequence[nn.Module], depths: Sequence[int]) -> Iterator[dict[int, torch.Tensor]]:
    """Inside the block, every forward run through ``up_to_deepest`` fills the yielded dict: depth -> state."""
    captured: dict[int, torch.Tensor] = {}
    top = max(depths)

    def before(depth: int):
        def hook(module, args, kwargs):
            captured[depth] = args[0] if args else kwargs["hidden_states"]
            if depth == top:
                raise _Stop
        return hook

    def after_last(module, args, kwargs, output):
        captured[len(blocks)] = output[0] if isinstance(output, tuple) else output
        raise _Stop

    handles = [blocks[d].register_forward_pre_hook(before(d), with_kwargs=True)
               for d in sorted(set(depths)) if d < len(blocks)]
    if top == len(blocks):
        handles.append(blocks[-1].register_forward_hook(after_last, with_kwargs=True))
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def up_to_deepest(forward: Callable[[], object]) -> None:
    """Run ``forward``, which the capture hooks stop at the deepest boundary."""
    try:
        forward()
    except _Stop:
        pass
