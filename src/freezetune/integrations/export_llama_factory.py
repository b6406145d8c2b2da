"""A plan as LLaMA-Factory's freeze (or LoRA) tuning keys, or a refusal that names the nearest plan it can take.

LLaMA-Factory's ``_setup_freeze_tuning`` (src/llamafactory/model/adapter.py) trains the last n
blocks (``freeze_trainable_layers: n``) or the first n (``-n``); in them, the modules named in
``freeze_trainable_modules`` (``all``, or first names inside a block: ``self_attn``, ``mlp``),
written as ``.{index}.{module}``; and outside the blocks, ``freeze_extra_modules`` (the name
before a parameter's last dot: ``embed_tokens``, ``lm_head``, ``norm``). A parameter trains when
one of those strings occurs anywhere in its name. Substrings reach further than they look
(``norm`` is also in every block's ``input_layernorm``), so the keys are checked by running those
rules over the model's parameter names: they must train exactly the plan, or the export refuses.
"""

from __future__ import annotations

import re
from dataclasses import replace

from freezetune.core.layout import LayerMap
from freezetune.core.plan import Plan
from freezetune.integrations.export_peft_config import lora_fields
from freezetune.integrations.export_refusal import cannot_express, without_rates
from freezetune.integrations.target import Target

TOOL = "LLaMA-Factory"


def llama_factory_keys(target: Target) -> dict:
    """The keys to merge into a LLaMA-Factory training YAML."""
    plan = without_rates(target.plan, TOOL)
    if plan.lora is not None:
        return _lora_keys(target, plan)
    keys, why = _freeze_keys(plan, target.layers)
    if keys is not None:
        why = _mismatch(keys, plan, target.layers)
        if not why:
            return keys
    nearest = _nearest(plan, target.layers)
    raise cannot_express(TOOL, why, nearest, instead="" if nearest else "; write it with --format axolotl or json")


def trained_by(keys: dict, names: list[str], num_layers: int) -> set[str]:
    """The names LLaMA-Factory's freeze tuning trains under ``keys`` (its matching rules)."""
    n = keys["freeze_trainable_layers"]
    ids = range(max(0, num_layers - n), num_layers) if n > 0 else range(min(-n, num_layers))
    modules = keys["freeze_trainable_modules"].split(",")
    patterns = [f".{i}.{'' if m == 'all' else m}" for m in modules for i in ids]
    patterns += [m for m in (keys.get("freeze_extra_modules") or "").split(",") if m]
    return {name for name in names if any(p in name for p in patterns)}


def _freeze_keys(plan: Plan, layers: LayerMap) -> tuple[dict | None, str]:
    blocks, total = list(plan.blocks), layers.num_blocks
    if not blocks:
        return None, "its freeze tuning trains at least one block"
    if blocks == list(range(total - len(blocks), total)):
        count = len(blocks)
    elif blocks == list(range(len(blocks))):
        count = -len(blocks)
    else:
        return None, "it trains the first or the last n blocks only"
    trained = plan.trainable_names(layers)
    block_of = layers.block_of_tensor()
    inside = {_first_module(n, layers.block_path) for n in trained if n in block_of}
    outside = {n.split(".")[-2] for n in trained if n not in block_of and "." in n}
    keys = {"finetuning_type": "freeze", "freeze_trainable_layers": count,
            "freeze_trainable_modules": "all" if not (plan.modules or plan.tensors) else ",".join(sorted(inside))}
    if outside:
        keys["freeze_extra_modules"] = ",".join(sorted(outside))
    return keys, ""


def _first_module(name: str, block_path: str) -> str:
    """``model.layers.3.self_attn.q_proj.weight`` -> ``self_attn``."""
    return re.sub(rf"^{re.escape(block_path)}\.\d+\.", "", name).split(".")[0]


def _mismatch(keys: dict, plan: Plan, layers: LayerMap) -> str:
    """Why ``keys`` would not train exactly ``plan`` ("" when they do)."""
    names = [n for n, _ in layers.model.named_parameters()]
    wanted = plan.trainable_names(layers)
    got = trained_by(keys, names, layers.num_blocks)
    extra = [n for n in names if n in got - wanted]
    if extra:
        return f"its keys match names as substrings, so {extra[0]} would train too"
    missing = [n for n in names if n in wanted - got]
    return f"its keys cannot reach {missing[0]}" if missing else ""


def _nearest(plan: Plan, layers: LayerMap) -> Plan | None:
    """The closest plan whose keys train exactly it: blocks widened to a prefix or suffix, then less."""
    total = layers.num_blocks
    blocks = plan.blocks or (total - 1,)
    suffix, prefix = tuple(range(min(blocks), total)), tuple(range(max(blocks) + 1))
    for widened in sorted((suffix, prefix), key=len):
        for modules in ((plan.modules, plan.tensors), ((), ())):
            for embeddings, head in ((plan.embeddings, plan.head), (plan.embeddings, False), (False, False)):
                candidate = replace(plan, blocks=widened, modules=modules[0], tensors=modules[1],
                                    embeddings=embeddings, head=head)
                keys, _ = _freeze_keys(candidate, layers)
                if keys is not None and not _mismatch(keys, candidate, layers):
                    return candidate
    return None


def _lora_keys(target: Target, plan: Plan) -> dict:
    if plan.lora.blocks and len(plan.lora.blocks) < target.layers.num_blocks:
        raise cannot_express(TOOL, "its LoRA adapts every block or none",
                             replace(plan, lora=replace(plan.lora, blocks=())))
    fields = lora_fields(replace(target, plan=plan), TOOL)
    keys = {"finetuning_type": "lora", "lora_rank": fields["r"], "lora_alpha": fields["lora_alpha"],
            "lora_dropout": fields["lora_dropout"], "lora_target": ",".join(fields["target_modules"])}
    if fields["modules_to_save"]:
        keys["additional_target"] = ",".join(fields["modules_to_save"])
    return keys
