"""The static strategies: a plan from the model's layout alone.

In every partial strategy the embeddings are frozen and the head trains unless toggled
(``embeddings=true``, ``head=false``). Blocks are numbered from 0 at the input.
"""

from __future__ import annotations

from freezetune.core.errors import FreezetuneError
from freezetune.core.layout import LayerMap
from freezetune.core.plan import LoraSpec, Plan
from freezetune.core.spec import BlockList, Names
from freezetune.strategies.registry import register


@register("full")
def full(layers: LayerMap) -> Plan:
    """Everything trains: embeddings, every block, head."""
    return Plan(blocks=tuple(range(layers.num_blocks)), embeddings=True)


@register("head_only")
def head_only(layers: LayerMap) -> Plan:
    """Only the head trains (pooler + classifier, or lm_head + final norm): the linear probe."""
    return Plan()


@register("lower_half")
def lower_half(layers: LayerMap) -> Plan:
    """Embeddings and blocks below L/2 frozen; the upper half and the head train."""
    n = layers.num_blocks
    return Plan(blocks=tuple(i for i in range(n) if i >= n / 2))


@register("alternate")
def alternate(layers: LayerMap) -> Plan:
    """Every even block (0, 2, 4, ...) and the embeddings frozen; odd blocks and the head train."""
    return Plan(blocks=tuple(range(1, layers.num_blocks, 2)))


@register("top_k", primary="k", help={"k": "how many blocks nearest the output train (0..L)"})
def top_k(layers: LayerMap, k: int = 2) -> Plan:
    """The k blocks nearest the output train (k = L: all blocks, embeddings still frozen)."""
    n = layers.num_blocks
    if not 0 <= k <= n:
        raise FreezetuneError(f"top_k needs 0 <= k <= {n} (this model has {n} blocks), got k={k}")
    return Plan(blocks=tuple(range(n - k, n)))


@register("depth", primary="d", help={"d": "frozen-prefix depth: embeddings and blocks 0..d-1 frozen"})
def depth(layers: LayerMap, d: int = 0) -> Plan:
    """Freeze the embeddings and blocks 0..d-1; blocks d..L-1 and the head train (d = L: head only)."""
    n = layers.num_blocks
    if not 0 <= d <= n:
        raise FreezetuneError(f"depth needs 0 <= d <= {n} (this model has {n} blocks), got d={d}")
    return Plan(blocks=tuple(range(d, n)))


@register("layers", primary="blocks", help={"blocks": "blocks that train, e.g. 0,3,10-12"})
def layers_(layers: LayerMap, blocks: BlockList = ()) -> Plan:
    """Exactly the listed blocks train (any list, non-contiguous, with ranges: 0,3,10-12)."""
    if not blocks:
        raise FreezetuneError("layers needs a block list, e.g. 'layers:0,3,10-12'")
    return Plan(blocks=blocks)


def _filter_strategy(group: str, doc: str) -> None:
    def build(layers: LayerMap, blocks: BlockList = ()) -> Plan:
        return Plan(blocks=blocks or tuple(range(layers.num_blocks)), modules=(group,))

    build.__doc__ = doc
    register(group, primary="blocks", help={"blocks": "blocks to filter (default: all)"})(build)


_filter_strategy("attention", "Only attention tensors (Q/K/V/output) of the blocks train, plus the head.")
_filter_strategy("ffn", "Only feed-forward tensors of the blocks train, plus the head.")
_filter_strategy("norm", "Only normalization layers of the blocks train, plus the head.")
_filter_strategy("bias", "BitFit: only bias terms of the blocks train, plus the head.")


@register(
    "lora",
    primary="r",
    help={
        "r": "LoRA rank",
        "alpha": "LoRA scaling numerator (scale = alpha / r)",
        "dropout": "dropout on the LoRA input",
        "targets": "module names to adapt, e.g. query+value (default: attention projections)",
        "blocks": "blocks that get adapters (default: all), e.g. 4,5",
    },
)
def lora(
    layers: LayerMap,
    r: int = 8,
    alpha: int = 16,
    dropout: float = 0.1,
    targets: Names = (),
    blocks: BlockList = (),
) -> Plan:
    """LoRA adapters through PEFT, on every block or only chosen ones; base weights frozen."""
    if r < 1:
        raise FreezetuneError(f"lora needs a rank r >= 1, got r={r}")
    return Plan(lora=LoraSpec(r=r, alpha=alpha, dropout=dropout, targets=targets, blocks=blocks))




@register("tensors", primary="names", help={"names": "weight tensors that train, joined by +"})
def tensors(layers: LayerMap, names: Names = ()) -> Plan:
    """Exactly the named block weight tensors train, plus the head (what auto's tensor granularity saves)."""
    if not names:
        raise FreezetuneError("tensors needs tensor names, e.g. 'tensors:backbone.encoder.layer.3.output.dense.weight'")
    owner = layers.block_of_tensor()
    stray = [n for n in names if n not in owner]
    if stray:
        raise FreezetuneError(f"{stray[0]!r} is not a weight tensor of one of this model's blocks")
    return Plan(blocks=tuple(sorted({owner[n] for n in names})), tensors=tuple(names))
