"""What a plan trains, in the few words a log line or a config's header comment has room for."""

from __future__ import annotations

from freezetune.core.layout import LayerMap
from freezetune.core.plan import Plan
from freezetune.scoring.select import compact


def blocks_line(plan: Plan, layers: LayerMap) -> str:
    """``embeddings, blocks 2-3 (attention), head`` / ``LoRA r=8 on blocks 4-5, head`` (blocks from 0 at the input)."""
    parts = ["embeddings"] if plan.embeddings else []
    if plan.blocks:
        detail = ""
        if plan.tensors:
            detail = f" ({len(plan.tensors)} tensors)"
        elif plan.modules:
            detail = f" ({'+'.join(plan.modules)})"
        parts.append(f"block{'s' if len(plan.blocks) > 1 else ''} {compact(plan.blocks)}{detail}")
    if plan.lora is not None:
        adapted = plan.lora.blocks or tuple(range(layers.num_blocks))
        parts.append(f"LoRA r={plan.lora.r} on blocks {compact(adapted)}")
    if plan.head:
        parts.append("head")
    return ", ".join(parts) or "nothing"



def header_lines(plan: Plan, layers: LayerMap, *, tool: str, model: str, trained: int, total: int,
                 command: str) -> list[str]:
    """What trains and the command that made it: the comment block atop an exported config."""
    trainable = plan.trainable_blocks(layers.num_blocks)
    frozen_blocks = [b for b in range(layers.num_blocks) if b not in trainable]
    frozen = ([] if plan.embeddings else ["embeddings"]) + ([f"blocks {compact(frozen_blocks)}"] if frozen_blocks
                                                            else []) + ([] if plan.head else ["head"])
    share = trained / total if total else 0.0
    return [
        f"freezetune plan for {tool}: {plan.spec} on {model}",
        f"trains: {blocks_line(plan, layers)}; {trained:,} of {total:,} parameters train in full ({share:.2%})",
        f"frozen: {', '.join(frozen) or 'nothing'} (blocks are numbered from 0 at the input)",
        f"made with: {command}",
    ]
