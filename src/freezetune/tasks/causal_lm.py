"""Causal language modelling: next-token cross-entropy on the target tokens, perplexity, exact match.

A batch's ``labels`` are per-token: the token ids the model must produce, and -100 where it
must not be scored (the prompt of a prompt/response pair, and padding). Position t's logits
predict token t+1, so the loss compares ``logits[:, :-1]`` with ``labels[:, 1:]``.

Metrics (``loss`` and ``perplexity`` always; the rest when there are targets):

* ``loss``: the mean cross-entropy over every target token of the data (not a mean of batch
  means), and ``perplexity = exp(loss)``;
* ``token_accuracy``: the share of target tokens that are the model's top prediction;
* ``exact_match``: the share of examples whose every target token is the top prediction. With
  teacher forcing this equals exact match after greedy generation: if the top token is right at
  every position, greedy decoding reproduces the response token by token (its own earlier
  tokens are the right ones), and a single wrong top token is where greedy decoding departs.
  Responses end with the end-of-sequence token, so the match includes stopping on time. It
  costs one forward per batch instead of one per generated token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from freezetune.core.causal_lm import CausalLM
from freezetune.core.config import CAUSAL_LM
from freezetune.core.errors import FreezetuneError
from freezetune.io.loader import IGNORE

LM_DIRECTIONS = {"loss": "min", "perplexity": "min", "token_accuracy": "max", "exact_match": "max"}


@dataclass
class CausalLanguageModeling:
    name: str = CAUSAL_LM
    directions: dict[str, str] = field(default_factory=lambda: dict(LM_DIRECTIONS))
    default_metric: str = "loss"
    # What a run's summary and a compare table show, the headline first: exact match when the
    # data are prompt/response pairs (short answers), perplexity for plain text.
    summary_metrics: tuple[str, ...] = ("perplexity", "loss", "token_accuracy")

    @classmethod
    def for_data(cls, prompt_response: bool) -> CausalLanguageModeling:
        if prompt_response:
            return cls(summary_metrics=("exact_match", "perplexity", "loss", "token_accuracy"))
        return cls()

    def build_model(self, backbone: nn.Module, *, pooling: str = "none") -> nn.Module:
        """``backbone`` is the whole ``...ForCausalLM``: its own ``lm_head`` is the head."""
        return backbone if isinstance(backbone, CausalLM) else CausalLM(backbone)

    def split(self, batch: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], Any]:
        """The labels stay whole; the model is asked for logits at the target positions only."""
        inputs = dict(batch)
        labels = inputs.pop("labels", None)
        if labels is not None:
            inputs["logits_at"] = labels[:, 1:] != IGNORE
        return inputs, labels

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits, labels = _targets(outputs, targets)
        if labels.numel() == 0:  # a batch with nothing to predict teaches nothing (and a mean of none is NaN)
            return logits.sum() * 0.0
        return nn.functional.cross_entropy(logits.float(), labels)

    def keep(self, outputs: torch.Tensor, targets: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """Per example: summed token loss, target tokens, tokens right, all right (small, on the CPU)."""
        if targets is None:
            return {"next_token": outputs[:, -1].argmax(-1).cpu()}
        logits, labels = _targets(outputs, targets)
        rows = (targets[:, 1:] != IGNORE).nonzero()[:, 0]  # the example of each target, row-major like the logits
        size = targets.size(0)
        token_loss = nn.functional.cross_entropy(logits.float(), labels, reduction="none").double()
        right = (logits.argmax(-1) == labels).long()
        count = torch.bincount(rows, minlength=size)
        hits = torch.zeros(size, dtype=torch.long, device=rows.device).index_add_(0, rows, right)
        return {
            "loss_sum": torch.zeros(size, dtype=torch.double, device=rows.device).index_add_(0, rows, token_loss).cpu(),
            "tokens": count.cpu(),
            "right": hits.cpu(),
            "exact": ((hits == count) & (count > 0)).cpu(),
        }

    def metrics(self, kept: list[dict[str, torch.Tensor]]) -> dict[str, Any]:
        if not kept or "tokens" not in kept[0]:
            raise FreezetuneError("evaluation data has no target tokens (labels)")
        tokens = torch.cat([k["tokens"] for k in kept])
        total = int(tokens.sum())
        if total == 0:
            raise FreezetuneError("evaluation data has no target tokens: every example's response is empty")
        loss = float(torch.cat([k["loss_sum"] for k in kept]).sum()) / total
        scored = tokens > 0
        return {
            "loss": loss,
            "perplexity": math.exp(min(loss, 700.0)),
            "token_accuracy": int(torch.cat([k["right"] for k in kept]).sum()) / total,
            "exact_match": float(torch.cat([k["exact"] for k in kept])[scored].float().mean()),
            "examples": int(scored.sum()),
            "target_tokens": total,
        }

    def predict(self, outputs: torch.Tensor) -> dict[str, Any]:
        """The most likely next token after each input (generation is ``CausalLM.generate``)."""
        return {"next_token": outputs[:, -1].argmax(-1).tolist()}


def _targets(outputs: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, token ids) of every target, row-major. ``outputs`` are packed logits (a model given
    ``logits_at``) or full ``(batch, length, vocab)`` logits, whose position t predicts token t+1."""
    scored = labels[:, 1:] != IGNORE
    if outputs.dim() == 3:
        outputs = outputs[:, :-1][scored]
    return outputs, labels[:, 1:][scored]
