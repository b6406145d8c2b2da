"""A task's model as a view of its base: its own module objects, the base's tensors, its own trained ones.

Every task on a base needs the base's module tree (its blocks, its forward) but must not pay
for a second copy of the weights. ``shared_copy`` deep-copies the modules while handing every
parameter and buffer of the base back as itself, so the copy costs a few KiB of Python objects;
``put_tensors`` then swaps in the task's trained tensors as new parameters of the copy alone
(every alias of a tied tensor with it), and the base never changes. LoRA adapters injected into
the copy wrap the copy's linears, whose weights stay the base's.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from freezetune.io.checkpoint import check_tensors_fit


def shared_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose parameters and buffers are the very tensors of ``model``."""
    memo: dict[int, object] = {}
    for tensor in [*model.parameters(), *model.buffers()]:
        memo[id(tensor)] = tensor
    for module in model.modules():  # hooks or caches a module keeps on tensors it does not register
        for value in vars(module).values():
            if isinstance(value, torch.Tensor):
                memo[id(value)] = value
    return copy.deepcopy(model, memo)


def put_tensors(model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Make each named tensor a parameter of ``model`` alone (frozen), in place of the shared one.

    A tied tensor (a decoder's embedding and its ``lm_head``) is one parameter under two names;
    every name that points at it gets the new parameter, so the tie holds in the task's model.
    """
    aliases: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        aliases.setdefault(id(param), []).append(name)
    params = dict(model.named_parameters(remove_duplicate=False))
    check_tensors_fit(params, tensors)
    for name, value in tensors.items():
        old = params[name]
        new = nn.Parameter(value.to(old.dtype).clone(), requires_grad=False)
        for alias in aliases[id(old)]:
            owner, _, leaf = alias.rpartition(".")
            (model.get_submodule(owner) if owner else model)._parameters[leaf] = new
            params[alias] = new


def own_bytes(model: nn.Module, base: nn.Module) -> int:
    """Bytes of ``model``'s parameters that are its own (not ``base``'s): what the task adds."""
    theirs = {id(p) for p in base.parameters()}
    return sum(p.numel() * p.element_size() for p in model.parameters() if id(p) not in theirs)
