"""A LoRA plan as PEFT's ``LoraConfig``: adapters on the planned blocks, everything else that trains saved whole.

``target_modules`` are the adapted linears' names inside a block (``self_attn.q_proj``), which
PEFT matches as name suffixes; ``layers_to_transform`` with ``layers_pattern`` (the block list's
own attribute, ``layers``, ``h``, ``layer``) keeps them to the planned blocks. What trains in full
(the head, a final norm, whole blocks) goes to ``modules_to_save``, which trains whole modules:
a plan that trains part of a module is refused rather than widened in silence.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import replace
from pathlib import Path

from freezetune.core.errors import FreezetuneError
from freezetune.core.lora import lora_targets
from freezetune.integrations.export_refusal import cannot_express, without_rates
from freezetune.integrations.target import Target
from freezetune.io.export_peft import modules_to_save

TOOL = "PEFT's LoraConfig"
FREEZING_FORMATS = "--format json, axolotl or llama-factory (or freezetune.apply in your own loop)"


def lora_fields(target: Target, tool: str = TOOL) -> dict:
    """The ``LoraConfig`` fields of a LoRA plan, named as PEFT names them."""
    plan = without_rates(target.plan, tool)
    if plan.lora is None:
        raise cannot_express(tool, "it trains no LoRA adapters: it only freezes",
                             instead=f"; write it with {FREEZING_FORMATS}")
    layers = target.layers
    adapted = lora_targets(plan.lora, layers)
    block_prefix = f"{layers.block_path}."
    inner = list(dict.fromkeys(n[len(block_prefix):].split(".", 1)[1] for n in adapted))
    trained = set(target.trained)
    try:
        saved = modules_to_save(layers.model, trained, set(adapted))
    except FreezetuneError as clash:  # a tensor trained in full inside an adapted module
        raise cannot_express(tool, str(clash).split(";")[0], replace(plan, blocks=(), modules=(), tensors=())) from None
    covered = {n for n, _ in layers.model.named_parameters() if any(n.startswith(f"{m}.") for m in saved)}
    if covered != trained:
        wider = sorted(covered - trained)[0]
        raise cannot_express(tool, f"modules_to_save trains whole modules, so {wider} would train too",
                             replace(plan, tensors=(), modules=()))
    conv1d = type(layers.model.get_submodule(adapted[0])).__name__ == "Conv1D"
    fields = {
        "r": plan.lora.r, "lora_alpha": plan.lora.alpha, "lora_dropout": plan.lora.dropout,
        "target_modules": inner, "modules_to_save": saved or None, "fan_in_fan_out": conv1d, "bias": "none",
    }
    if plan.lora.blocks:
        fields |= {"layers_to_transform": list(plan.lora.blocks), "layers_pattern": layers.block_path.rsplit(".")[-1]}
    return fields


def adapter_config_json(target: Target) -> str:
    """``adapter_config.json`` as PEFT itself writes it, for ``LoraConfig.from_pretrained(folder)``."""
    from peft import LoraConfig

    config = LoraConfig(task_type="CAUSAL_LM" if target.causal_lm else "SEQ_CLS",
                        base_model_name_or_path=target.model, **lora_fields(target))
    with tempfile.TemporaryDirectory() as folder:
        config.save_pretrained(folder)
        text = (Path(folder) / "adapter_config.json").read_text()
    return json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"
