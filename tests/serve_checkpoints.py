"""Compact checkpoints of tiny models for the server's tests: a base plus perturbed trained tensors.

Training is not what these tests check, so a checkpoint is written the way a run writes one
(``save_checkpoint`` on a model whose plan was applied), with its trained tensors moved off the
base by seeded noise: every trained tensor differs from the base, as after training.
"""

from __future__ import annotations

import torch

from freezetune.core.layout import LayerMap
from freezetune.core.lora import add_lora
from freezetune.core.model import load_classifier
from freezetune.io.checkpoint import base_fingerprint, save_checkpoint
from freezetune.strategies.registry import resolve

LABELS = ["neg", "neu", "pos"]


def _perturbed(model, strategy: str, scale: float):
    """``model`` with ``strategy``'s tensors moved by seeded noise: a stand-in for training them.

    Returns (the model, LoRA added where the plan has it; the plan; the base's fingerprint before any change).
    """
    fingerprint = base_fingerprint(model.backbone)
    layers = LayerMap.from_model(model)
    plan = resolve(strategy, layers)
    if plan.lora is not None:
        model, layers = add_lora(model, plan.lora, layers)
    plan.apply(model, layers)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(torch.randn_like(param) * scale)
    return model, plan, fingerprint


def write_checkpoint(folder, base_dir: str, strategy: str, *, labels=LABELS, pooling: str = "mean",
                     pair: bool = False, seed: int = 0, max_length: int = 32, scale: float = 0.05):
    """A classification checkpoint of ``strategy`` on ``base_dir``; returns its JSON dict."""
    torch.manual_seed(seed)
    model, plan, fingerprint = _perturbed(load_classifier(base_dir, len(labels), pooling=pooling), strategy, scale)
    config = {"strategy": strategy, "text_column": "text", "max_length": max_length}
    if pair:
        config["text_pair_column"] = "pair"
    return save_checkpoint(folder, model.eval(), plan, base_path=base_dir, gguf_file=None,
                           base_fingerprint=fingerprint, label_names=labels, config=config)


def write_lm_checkpoint(folder, base_dir: str, strategy: str, *, seed: int = 0, max_length: int = 32,
                        scale: float = 0.5, chat_template: str = "auto"):
    """A causal-LM checkpoint of ``strategy`` on ``base_dir`` (perturbed like ``write_checkpoint``)."""
    from freezetune.core.causal_lm import load_causal_lm
    from freezetune.core.config import CAUSAL_LM

    torch.manual_seed(seed)
    model, plan, fingerprint = _perturbed(load_causal_lm(base_dir), strategy, scale)
    config = {"strategy": strategy, "task": CAUSAL_LM, "prompt_column": "prompt", "max_length": max_length,
              "chat_template": chat_template}
    return save_checkpoint(folder, model.eval(), plan, base_path=base_dir, gguf_file=None,
                           base_fingerprint=fingerprint, label_names=None, config=config, task=CAUSAL_LM)
