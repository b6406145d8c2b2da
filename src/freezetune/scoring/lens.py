"""The logit lens of a causal LM: the model's own final norm and ``lm_head`` read every block boundary.

``semantic`` on a decoder measures, at each boundary l = 0..L, how well the hidden state there
already predicts the response: D_l is the mean next-token cross-entropy, over every target token
of the sample, of ``lm_head(final_norm(h_l))``. At boundary L this is the model's own loss (the
readout is exactly the model's head), which ``details["model_loss"]`` records as a check.

The readout is found structurally, never by architecture name: ``lm_head`` is the backbone's
``get_output_embeddings()``, and the final norm is the one norm module registered after the block
list (``model.norm`` in Llama and Qwen2, ``transformer.ln_f`` in GPT-2), outside ``lm_head``.
A model with no norm there is read by ``lm_head`` alone; one with several is refused, as we could
not tell which of them the head applies.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from freezetune.core.errors import FreezetuneError
from freezetune.core.layout import LayerMap
from freezetune.scoring.probes import no_targets, split_batch
from freezetune.scoring.sample import take
from freezetune.tasks.causal_lm import IGNORE
from freezetune.tasks.task import Task

# Target rows read per lm_head call: logits of 512 rows of a 50k vocabulary take ~100 MiB in float32.
CHUNK = 512


@dataclass
class Readout:
    norm: nn.Module | None
    lm_head: nn.Module
    norm_name: str | None
    lm_head_name: str

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Next-token logits of hidden states ``[N, H]`` (norms act per position, so rows may be any subset)."""
        if self.norm is not None:
            hidden = self.norm(hidden)
        return self.lm_head(hidden).float()


def _is_norm(module: nn.Module) -> bool:
    return "norm" in type(module).__name__.lower() or isinstance(module, nn.LayerNorm)


def readout(model: nn.Module, layers: LayerMap) -> Readout:
    """The final norm and ``lm_head`` of a causal LM (see the module docstring)."""
    backbone = getattr(model, "backbone", model)
    get = getattr(backbone, "get_output_embeddings", None)
    lm_head = get() if callable(get) else None
    if not isinstance(lm_head, nn.Module):
        raise FreezetuneError(f"semantic's logit lens needs the model's lm_head (get_output_embeddings()); "
                              f"{type(backbone).__name__} has none")
    names = {id(m): n for n, m in model.named_modules()}
    head_modules = {id(m) for m in lm_head.modules()}
    inside = layers.block_path + "."
    past_blocks, norms = False, []
    for name, module in model.named_modules():
        if name == layers.block_path or name.startswith(inside):
            past_blocks = True
            continue
        if past_blocks and id(module) not in head_modules and not list(module.children()) and _is_norm(module):
            norms.append(name)
    if len(norms) > 1:
        raise FreezetuneError(f"semantic's logit lens cannot tell the final norm among {', '.join(norms)}; "
                              "use gradient, snr or fisher for this model")
    norm = model.get_submodule(norms[0]) if norms else None
    return Readout(norm, lm_head, norms[0] if norms else None, names.get(id(lm_head), "lm_head"))


@dataclass
class LensTrace:
    loss_sums: list[float]  # per boundary: summed next-token cross-entropy of the lens over target tokens
    right: list[int]  # per boundary: target tokens that are the lens's top prediction
    model_loss_sum: float  # the same sum from the model's own logits
    tokens: int
    rows: int
    batches: int


def lens_trace(model: nn.Module, layers: LayerMap, task: Task, batches, max_samples: int | None,
               reader: Readout) -> LensTrace:
    """One no-grad forward per batch; hooks keep each boundary's hidden state at the target positions only.

    Position t predicts token t+1, so boundary l's state at t is read against ``labels[t + 1]``
    wherever that label is not -100 (prompt and padding are never read).
    """
    blocks = layers.blocks
    count = len(blocks) + 1
    captured: list[torch.Tensor] = []
    selected: list[torch.Tensor] = []  # the current batch's target mask, [B, T-1]

    def keep(hidden: torch.Tensor) -> None:
        captured.append(hidden[:, :-1][selected[0]])

    def before(module, args, kwargs):
        keep(args[0] if args else kwargs["hidden_states"])

    def after(module, args, output):
        keep(output[0] if isinstance(output, (tuple, list)) else output)

    trace = LensTrace([0.0] * count, [0] * count, 0.0, 0, 0, 0)
    device = next(model.parameters()).device
    hooks = [blocks[0].register_forward_pre_hook(before, with_kwargs=True)]
    hooks += [block.register_forward_hook(after) for block in blocks]
    try:
        with torch.no_grad():
            for batch in take(batches, max_samples):
                inputs, labels, tokens = split_batch(task, batch, device)
                trace.rows += len(labels)
                trace.batches += 1
                if tokens == 0:  # nothing to predict in this batch (every response cut off)
                    continue
                shifted = labels[:, 1:]
                selected[:] = [shifted != IGNORE]
                goal = shifted[selected[0]]
                captured.clear()
                logits = model(**inputs)
                if len(captured) < count:
                    raise FreezetuneError(f"semantic's logit lens saw {len(captured)} of {count} block boundaries")
                for boundary, hidden in enumerate(captured[:count]):
                    loss, right = _read(reader, hidden, goal)
                    trace.loss_sums[boundary] += loss
                    trace.right[boundary] += right
                own = logits if logits.dim() == 2 else logits[:, :-1][selected[0]]  # packed, or every position
                trace.model_loss_sum += float(F.cross_entropy(own.float(), goal, reduction="sum"))
                trace.tokens += tokens
    finally:
        for hook in hooks:
            hook.remove()
    if trace.tokens == 0:
        raise no_targets("semantic")
    return trace


def _read(reader: Readout, hidden: torch.Tensor, goal: torch.Tensor) -> tuple[float, int]:
    """Summed cross-entropy and top-1 hits of the lens on target rows, a chunk of rows at a time."""
    loss, right = 0.0, 0
    for start in range(0, len(goal), CHUNK):
        logits = reader.logits(hidden[start:start + CHUNK])
        target = goal[start:start + CHUNK]
        loss += float(F.cross_entropy(logits, target, reduction="sum"))
        right += int((logits.argmax(-1) == target).sum())
    return loss, right
