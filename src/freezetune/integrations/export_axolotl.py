"""A plan as axolotl config keys: ``unfrozen_parameters`` for a freezing plan, ``adapter: lora`` for LoRA.

axolotl's ``freeze_layers_except`` (src/axolotl/utils/freeze.py) escapes every ``.`` that is not
followed by ``+`` and matches each pattern with ``re.match``, i.e. from the start of the name. So
``^model.layers.3.`` is exactly block 3's parameters (block 30's names continue ``3`` with ``0``),
and a tensor trained alone is written as its full name between ``^`` and ``$``. Patterns carry no
backslashes: axolotl's own escaping would double them.

A LoRA plan maps onto axolotl's PEFT keys (``lora_r``, ``lora_target_modules``,
``peft_layers_to_transform``, ``lora_modules_to_save``), the same fields as the PEFT export.
"""

from __future__ import annotations

from freezetune.core.layout import block_unit
from freezetune.integrations.export_peft_config import lora_fields
from freezetune.integrations.export_refusal import without_rates
from freezetune.integrations.target import Target

TOOL = "axolotl"
_LORA_KEYS = {"r": "lora_r", "lora_alpha": "lora_alpha", "lora_dropout": "lora_dropout",
              "target_modules": "lora_target_modules", "layers_to_transform": "peft_layers_to_transform",
              "modules_to_save": "lora_modules_to_save", "fan_in_fan_out": "lora_fan_in_fan_out"}


def axolotl_keys(target: Target) -> dict:
    """The keys to merge into an axolotl config."""
    plan = without_rates(target.plan, TOOL)
    if plan.lora is not None:
        fields = lora_fields(target, TOOL)
        keys = {"adapter": "lora"} | {_LORA_KEYS[k]: v for k, v in fields.items() if k in _LORA_KEYS and v}
        if "layers_pattern" in fields:
            keys["peft_layers_pattern"] = [fields["layers_pattern"]]
        return keys
    return {"unfrozen_parameters": unfrozen_patterns(target)}


def unfrozen_patterns(target: Target) -> list[str]:
    """Start-anchored patterns in the model's order: a block's prefix where it trains whole, else exact names."""
    layers, trained = target.layers, set(target.trained)
    whole = {i for i in range(layers.num_blocks) if all(n in trained for n in layers.units[block_unit(i)])}
    block_of = layers.block_of_tensor()
    patterns: list[str] = []
    for name in target.trained:
        index = block_of.get(name)
        pattern = f"^{layers.block_path}.{index}." if index in whole else f"^{name}$"
        if pattern not in patterns:
            patterns.append(pattern)
    return patterns
