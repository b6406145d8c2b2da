"""Where tensors live: the device, the model's inputs of a batch, an eval-mode guard."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from freezetune.core.errors import FreezetuneError

# What a Hugging Face encoder's forward takes from a batch; labels, indices and the rest stay out.
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def pick_device() -> torch.device:
    """The GPU when there is one, else the CPU."""
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def device_of(model: nn.Module) -> torch.device:
    """Where the model's parameters live (the CPU for a model without any)."""
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 autocast on a GPU that supports it (``auto`` or ``bf16``); None means plain fp32."""
    if precision == "fp32":
        return None
    supported = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if precision == "bf16" and not supported:
        raise FreezetuneError("--precision bf16 needs a GPU with bf16 support; use auto or fp32")
    return torch.bfloat16 if supported else None


def model_inputs(batch: Mapping[str, Any], device: torch.device) -> dict[str, torch.Tensor]:
    """The model's own inputs of ``batch``, as tensors on ``device``."""
    return {k: torch.as_tensor(batch[k]).to(device) for k in MODEL_INPUTS if batch.get(k) is not None}


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode inside; every module's own training flag restored after (mixed modes survive)."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, mode in modes:
            module.training = mode
