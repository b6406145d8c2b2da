"""The model another tool will train, and a plan carried onto it.

axolotl, LLaMA-Factory and PEFT load the plain Hugging Face class (``AutoModelForCausalLM``,
``AutoModelForSequenceClassification``) and name its parameters their own way
(``model.layers.3...``, ``bert.encoder.layer.3...``). An export must speak those names. The
class is built from the config alone on the meta device: its names and shapes, no weights read.
A plan names units and blocks, so it carries over as it is; tensor-level choices, named in the
model they were measured on, are renamed block by block.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from freezetune.core.layout import LayerMap
from freezetune.core.model import load_config
from freezetune.core.plan import Plan


@dataclass(frozen=True)
class Target:
    """A plan on the model another tool loads: what trains there, by that model's names."""

    plan: Plan
    layers: LayerMap
    model: str  # the model folder or Hub name the other tool is pointed at
    causal_lm: bool
    notes: tuple[str, ...] = ()  # what a measuring spec chose, for the exported files' header

    @property
    def trained(self) -> list[str]:
        """The base-model parameters that train (LoRA adapters aside), in the model's order."""
        names = self.plan.trainable_names(self.layers)
        return [n for n, _ in self.layers.model.named_parameters() if n in names]

    def counts(self) -> tuple[int, int]:
        """(parameters that train in full, all parameters)."""
        sizes = {n: p.numel() for n, p in self.layers.model.named_parameters()}
        return sum(sizes[n] for n in self.trained), sum(sizes.values())


def target_model(model: str | Path, *, causal_lm: bool, num_labels: int = 2, gguf_file: str | None = None,
                 trust_remote_code: bool = False) -> nn.Module:
    """The Hugging Face class the other tool loads for ``model``, on the meta device (no weights)."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    config = load_config(model, gguf_file=gguf_file, trust_remote_code=trust_remote_code)
    if not causal_lm:
        config.num_labels = num_labels
    auto = AutoModelForCausalLM if causal_lm else AutoModelForSequenceClassification
    with torch.device("meta"):
        return auto.from_config(config, trust_remote_code=trust_remote_code)


def carried(plan: Plan, source: LayerMap, target: LayerMap) -> Plan:
    """``plan``, measured on ``source``, in ``target``'s tensor names (same blocks, other prefixes)."""
    if not plan.tensors and not plan.tensor_lr_multipliers:
        return plan.validate(target)

    def rename(name: str) -> str:
        prefix = f"{source.block_path}."
        if not name.startswith(prefix):
            return name
        return f"{target.block_path}.{name[len(prefix):]}"

    moved = replace(plan, tensors=tuple(rename(n) for n in plan.tensors),
                    tensor_lr_multipliers=tuple((rename(n), m) for n, m in plan.tensor_lr_multipliers))
    return moved.validate(target)
