"""A causal language model as freezetune trains it: the whole Hugging Face ``...ForCausalLM``.

The wrapper exists so that every task model looks the same to the training loop: ``forward``
returns a tensor (here next-token logits) and ``backbone`` is the pretrained part. For a
decoder the pretrained part is the whole ``...ForCausalLM``, ``lm_head`` included: retention
measures its perplexity, export saves it as is, and a PEFT adapter applies to it directly.

The LayerMap of the wrapper puts the token embedding (and ``lm_head`` when tied to it) in the
embeddings unit, the decoder blocks in ``block.i``, and the final norm (and an untied
``lm_head``) in the head unit.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from freezetune.core.errors import FreezetuneError
from freezetune.core.model import dequantized, is_decoder, remote_code_error

log = logging.getLogger("freezetune")


# Config fields of models whose logits are more than lm_head(hidden): those always take the full path.
_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale")


class CausalLM(nn.Module):
    """``forward`` gives next-token logits; ``generate`` decodes greedily.

    With ``logits_at`` (a ``(batch, length - 1)`` mask of the positions whose next token is a
    target) the vocabulary projection runs on those positions only and the result is packed,
    ``(targets, vocab)``, in row-major order. A prompt/response batch has a few target tokens
    per example, and on a 49k-token vocabulary ``lm_head`` over every position costs as much
    as several decoder blocks, forward and backward. Without it: ``(batch, length, vocab)``.
    """

    pooling = "none"  # no sentence pooling: every position predicts the next token

    def __init__(self, lm: nn.Module, *, check_packing: bool = True):
        super().__init__()
        self.backbone = lm
        self.config = lm.config
        # An empty model (built on the meta device only for its layout) cannot run the check.
        self.packs_logits = self._packing_agrees() if check_packing else False

    @torch.no_grad()
    def _packing_agrees(self) -> bool:
        """Whether ``lm_head`` on the base model's last hidden state gives the model's own logits.

        A model whose logits are more (soft-capping, a scale, a multiplier some config field
        names) keeps the full path, found by checking once on four tokens, not by a list of names.
        """
        lm = self.backbone
        if lm.base_model is lm or lm.get_output_embeddings() is None:
            return False
        if any(getattr(lm.config, k, None) for k in _LOGIT_TRANSFORMS):
            return False
        modes = [(m, m.training) for m in lm.modules()]
        lm.eval()
        try:
            with torch.random.fork_rng(devices=[]):  # the check must not move the run's random stream
                ids = torch.arange(4, device=lm.device)[None] % lm.config.vocab_size
                mask = torch.ones_like(ids)
                full = lm(input_ids=ids, attention_mask=mask, use_cache=False).logits
                hidden = getattr(lm.base_model(input_ids=ids, attention_mask=mask, use_cache=False),
                                 "last_hidden_state", None)
                return hidden is not None and torch.allclose(lm.get_output_embeddings()(hidden), full, atol=1e-4)
        finally:
            for module, training in modes:
                module.train(training)

    def forward(self, input_ids, attention_mask, logits_at: torch.Tensor | None = None, **_) -> torch.Tensor:
        if logits_at is None or not self.packs_logits:
            logits = self.backbone(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
            return logits if logits_at is None else logits[:, :-1][logits_at]
        hidden = self.backbone.base_model(input_ids=input_ids, attention_mask=attention_mask,
                                          use_cache=False).last_hidden_state  # after the final norm
        return self.backbone.get_output_embeddings()(hidden[:, :-1][logits_at])

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *, max_new_tokens: int,
                 eos_token_id: int | list[int] | None, pad_token_id: int, **watchers) -> torch.Tensor:
        """Greedy continuations of left-padded prompts: the new tokens only, padded with ``pad_token_id``.

        ``watchers`` go to transformers' ``generate`` as they are (a ``streamer``, ``stopping_criteria``).
        """
        out = self.backbone.generate(
            input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=max_new_tokens, do_sample=False,
            eos_token_id=eos_token_id, pad_token_id=pad_token_id, **watchers,
        )
        return out[:, input_ids.size(1):]


def load_causal_lm(model_path: str | Path, *, gguf_file: str | None = None,
                   dtype: torch.dtype = torch.float32, trust_remote_code: bool = False) -> CausalLM:
    """A causal LM from a local folder (or GGUF file in it, dequantized), in float32 by default."""
    from transformers import AutoModelForCausalLM

    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    try:
        lm = AutoModelForCausalLM.from_pretrained(str(model_path), dtype=dtype, trust_remote_code=trust_remote_code,
                                                  **kwargs)
    except (OSError, ValueError) as error:
        text = str(error).strip()
        if "trust_remote_code" in text:
            raise remote_code_error(model_path) from None
        first = text.splitlines()[0] if text else type(error).__name__
        raise FreezetuneError(
            f"cannot load {model_path} as a causal language model: {first} "
            "(give a local decoder folder with --model, and --gguf-file for a GGUF file in it)"
        ) from None
    if gguf_file:
        dequantized(lm)
    if not is_decoder(lm.config):  # BERT loads as BertLMHeadModel, but it was never trained to continue text
        raise FreezetuneError(f"{model_path} is an encoder ({lm.config.model_type}), not a causal language model: "
                              "use it with --task classification, or give a decoder with --model")
    log.info("loaded %s (%s)", model_path, type(lm).__name__)
    return CausalLM(lm)
