"""The plan spec that makes a plan: what a refusal names as the nearest plan a tool can express.

Only static plans are written back (whole blocks, module groups, embeddings and head, LoRA on
every block or on chosen ones); tensor choices and per-unit rates have no short spec, and the
exports that refuse them name a plan without them.
"""

from __future__ import annotations

from freezetune.core.plan import LoraSpec, Plan
from freezetune.scoring.select import compact

_LORA_DEFAULTS = LoraSpec()


def spec_text(plan: Plan) -> str:
    """``layers:4-5:head=false``, ``attention:0-3``, ``lora:r=8:blocks=4,5``..."""
    if plan.lora is not None:
        head = _lora_text(plan.lora)
    elif plan.modules:
        head = f"layers:{compact(plan.blocks)}:modules={'+'.join(plan.modules)}"
    elif plan.blocks:
        head = f"layers:{compact(plan.blocks)}"
    else:
        head = "head_only"
    options = []
    if plan.embeddings:
        options.append("embeddings=true")
    if not plan.head:
        options.append("head=false")
    return ":".join([head, *options])


def _lora_text(lora: LoraSpec) -> str:
    parts = [f"lora:r={lora.r}"]
    if lora.alpha != _LORA_DEFAULTS.alpha:
        parts.append(f"alpha={lora.alpha}")
    if lora.dropout != _LORA_DEFAULTS.dropout:
        parts.append(f"dropout={lora.dropout:g}")
    if lora.targets:
        parts.append(f"targets={'+'.join(lora.targets)}")
    if lora.blocks:
        parts.append(f"blocks={compact(lora.blocks)}")
    return ":".join(parts)
