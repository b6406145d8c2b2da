"""LoRA adapters through PEFT, injected in place on the linear layers of chosen blocks.

``peft.inject_adapter_in_model`` modifies the model itself (no ``PeftModel`` wrapper), so the
model keeps its class and the block path is unchanged: ``...encoder.layer.4.attention.self.query``
gains ``.lora_A.default.weight`` / ``.lora_B.default.weight`` and its own weight moves to
``.query.base_layer.weight``. Blocks are chosen by listing the full dotted names of the adapted
linears as ``target_modules`` (PEFT matches exact names), so nothing outside the chosen blocks,
such as a pooler's ``dense``, can match by accident.
"""

from __future__ import annotations

import torch
from torch import nn

from freezetune.core.errors import FreezetuneError
from freezetune.core.layout import LayerMap
from freezetune.core.plan import LoraSpec

ADAPTER = "default"
_SPEC_ATTR = "_freezetune_lora"  # set on an adapted model: (r, alpha, dropout, adapted module names)
# Attention query/value projections by architecture, tried in order against block 0.
_AUTO_TARGETS = (
    ("query", "value"),  # BERT, RoBERTa, MiniLM
    ("q_lin", "v_lin"),  # DistilBERT
    ("q_proj", "v_proj"),  # Llama, Qwen, Mistral, OPT
    ("c_attn",),  # GPT-2 (fused QKV, Conv1D)
    ("query_key_value",),  # GPT-NeoX, Falcon, BLOOM
    ("Wqkv",),  # ModernBERT, MPT
    ("qkv_proj",),  # Phi-3
)


def _is_linear(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D"


def _linear_names(block: nn.Module) -> list[str]:
    """Dotted names (relative to the block) of its linear layers, adapted ones included."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    names, inside = [], ()
    for name, module in block.named_modules():
        if inside and name.startswith(inside):
            continue
        if isinstance(module, BaseTunerLayer):
            names.append(name)
            inside = (name + ".",)
        elif name and _is_linear(module):
            names.append(name)
    return names


def _matches(name: str, target: str) -> bool:
    return name == target or name.endswith("." + target)


def lora_targets(spec: LoraSpec, layers: LayerMap) -> list[str]:
    """Full dotted names of the linears to adapt, in block order."""
    blocks = sorted(set(spec.blocks)) if spec.blocks else list(range(layers.num_blocks))
    for index in blocks:
        layers.check_block(index)
    found = _linear_names(layers.blocks[0])
    available = ", ".join(found) or "none"
    targets = spec.targets
    if not targets:
        leaves = {name.rsplit(".", 1)[-1] for name in found}
        targets = next((t for t in _AUTO_TARGETS if set(t) <= leaves), ())
        if not targets:
            raise FreezetuneError(
                "cannot choose LoRA targets for this model automatically: no attention query/value "
                f"projection among the linear layers of a block ({available}); name them with "
                "targets=, e.g. lora:targets=q+v"
            )
    names = []
    for target in targets:
        matched = [
            f"{layers.block_path}.{i}.{n}"
            for i in blocks
            for n in _linear_names(layers.blocks[i])
            if _matches(n, target)
        ]
        if not matched:
            raise FreezetuneError(
                f"LoRA target {target!r} matches no linear layer of the chosen blocks; "
                f"the linear layers of a block are: {available}"
            )
        names.extend(m for m in matched if m not in names)
    return names


def _key(spec: LoraSpec, names: list[str]) -> tuple:
    return (spec.r, spec.alpha, float(spec.dropout), tuple(sorted(names)))


def add_lora(model: nn.Module, spec: LoraSpec, layers: LayerMap) -> tuple[nn.Module, LayerMap]:
    """Inject LoRA adapters in place (once); return the model and its rebuilt LayerMap."""
    from peft import LoraConfig, inject_adapter_in_model

    names = lora_targets(spec, layers)
    key = _key(spec, names)
    has_adapters = any("lora_" in n for n, _ in model.named_parameters())
    if has_adapters:
        existing = getattr(model, _SPEC_ATTR, None)
        if existing == key:
            return model, LayerMap.from_model(model)
        raise FreezetuneError(
            f"the model already carries different LoRA adapters; cannot add {spec} on top: "
            "a schedule must keep one LoRA spec for the whole run (merge_lora removes adapters)"
        )
    conv1d = [type(model.get_submodule(n)).__name__ == "Conv1D" for n in names]
    config = LoraConfig(
        r=spec.r,
        lora_alpha=spec.alpha,
        lora_dropout=spec.dropout,
        target_modules=names,
        fan_in_fan_out=all(conv1d),  # GPT-2's Conv1D stores its weight transposed
        bias="none",
    )
    model = inject_adapter_in_model(config, model, adapter_name=ADAPTER)
    for name in names:  # new modules start in train mode: follow the layer they wrap
        adapted = model.get_submodule(name)
        adapted.train(adapted.get_base_layer().training)
    setattr(model, _SPEC_ATTR, key)
    return model, LayerMap.from_model(model)


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base weight and put the plain layer back (in place)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    adapted = [name for name, module in model.named_modules() if isinstance(module, BaseTunerLayer)]
    for name in adapted:
        module = model.get_submodule(name)
        parent_name, _, child = name.rpartition(".")
        with torch.no_grad():
            module.merge(safe_merge=True)
        setattr(model.get_submodule(parent_name), child, module.get_base_layer())
    for attr in ("peft_config", _SPEC_ATTR):
        if attr in model.__dict__:
            delattr(model, attr)
    return model


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter tensors only, under the model's own parameter names."""
    return {n: p.detach() for n, p in model.named_parameters() if "lora_" in n}


def peft_lora_config(model: nn.Module, spec: LoraSpec, *, rename=None, **fields):
    """The ``LoraConfig`` that re-creates this model's adapters on another copy of its modules.

    ``rename`` maps each adapted module's name in ``model`` to its name in the model PEFT will
    wrap (an export's own class names the same modules differently: ``backbone.encoder...`` here,
    ``bert.encoder...`` in ``BertForSequenceClassification``). Target names stay exact full names,
    so PEFT adapts the same linears and nothing else. ``fields`` go to ``LoraConfig`` as they are
    (``task_type``, ``modules_to_save``, ``base_model_name_or_path``...).
    """
    from peft import LoraConfig

    if getattr(model, _SPEC_ATTR, None) is None:
        raise FreezetuneError("the model has no LoRA adapters added by freezetune to save")
    names = lora_targets(spec, LayerMap.from_model(model))
    if getattr(model, _SPEC_ATTR) != _key(spec, names):
        raise FreezetuneError(f"{spec} is not the LoRA spec this model was adapted with")
    rename = rename or (lambda name: name)
    return LoraConfig(
        r=spec.r,
        lora_alpha=spec.alpha,
        lora_dropout=spec.dropout,
        target_modules=[rename(n) for n in names],
        fan_in_fan_out=model.peft_config[ADAPTER].fan_in_fan_out,
        bias="none",
        **fields,
    )
