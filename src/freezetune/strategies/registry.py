"""Strategies by name: ``name -> pure function(LayerMap, **options) -> Plan``.

Every static strategy also takes the common options below (``embeddings``, ``head``,
``modules``, ``lr_decay``). Block numbering is 0-based from the input side. In every
partial strategy the embeddings are frozen and the head trains unless toggled.
``freezetune strategies`` prints this registry; tests loop over it.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, replace
from typing import Callable, get_type_hints

from freezetune.core.errors import FreezetuneError
from freezetune.core.layout import EMBEDDINGS, HEAD, LayerMap, block_unit
from freezetune.core.plan import LoraSpec, Plan
from freezetune.core.spec import BlockList, Names, convert, format_value, parse_spec


@dataclass(frozen=True)
class Option:
    name: str
    kind: type
    default: object
    help: str


@dataclass(frozen=True)
class Strategy:
    name: str
    build: Callable[..., Plan]
    doc: str
    options: dict[str, Option]
    primary: str | None

    def usage(self) -> str:
        parts = [self.name]
        for option in self.options.values():
            if option.name not in COMMON:
                parts.append(f"{option.name}={format_value(option.default)}")
        return ":".join(parts)


REGISTRY: dict[str, Strategy] = {}

COMMON = {
    "embeddings": Option("embeddings", bool, None, "train the embeddings (default: only `full` does)"),
    "head": Option("head", bool, True, "train the head (pooler/classifier or lm_head + final norm)"),
    "modules": Option(
        "modules", Names, (), "inside trainable blocks train only these groups: attention+ffn+norm+bias"
    ),
    "lr_decay": Option(
        "lr_decay", float, 1.0, "discriminative LR: each block below the top trainable one gets lr / decay"
    ),
}


def register(name: str, *, primary: str | None = None, help: dict[str, str] | None = None):
    """Register ``fn(layers, **options) -> Plan``; option types and defaults come from its signature."""

    def decorate(fn: Callable[..., Plan]) -> Callable[..., Plan]:
        hints = get_type_hints(fn)
        options = {}
        for param in list(inspect.signature(fn).parameters.values())[1:]:
            options[param.name] = Option(
                param.name, hints[param.name], param.default, (help or {}).get(param.name, "")
            )
        summary = (inspect.getdoc(fn) or name).splitlines()[0]
        REGISTRY[name] = Strategy(name, fn, summary, {**options, **COMMON}, primary)
        return fn

    return decorate


# ---------------------------------------------------------------------- static strategies
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


@register(
    "auto",
    primary="scorer",
    help={
        "scorer": "scorer: semantic, variability, gradient, snr, fisher (see docs/scoring.md)",
        "budget": "below 1: share of the model's parameters that may train; 1 or more: number of blocks "
                  "(granularity=tensor: number of tensors)",
        "contiguous": "train a contiguous top suffix (its frozen prefix can be cached) instead of the top blocks",
        "granularity": "block, or tensor: pick individual weight tensors (needs gradient, snr or fisher)",
        "threshold": "granularity=tensor: every block tensor scoring at least this (0..1) instead of a budget",
    },
)
def auto(layers: LayerMap, scorer: str = "semantic", budget: float = 0.25, contiguous: bool = True,
         granularity: str = "block", threshold: float = 0.0) -> Plan:
    """Score each block (or tensor) on a sample of the training data and train the best under a budget."""
    from freezetune.scoring.select import auto_plan

    return auto_plan(layers, scorer=scorer, budget=budget, contiguous=contiguous, granularity=granularity,
                     threshold=threshold or None)


@register("auto_rgn")
def auto_rgn(layers: LayerMap) -> Plan:
    """Auto-RGN: everything trains, each tensor's rate scaled by its relative gradient norm, every epoch."""
    from freezetune.scoring.rgn import rgn_plan

    return rgn_plan(layers)


# ---------------------------------------------------------------------- resolution
def _known() -> str:
    return ", ".join(sorted(REGISTRY))


def _parse(spec: str) -> tuple[Strategy, dict]:
    """Look the name up and convert every option to its declared type."""
    parsed = parse_spec(spec)
    strategy = REGISTRY.get(parsed.name)
    if strategy is None:
        raise FreezetuneError(f"unknown strategy {parsed.name!r}; known: {_known()}")
    raw = dict(parsed.options)
    if parsed.positional is not None:
        if strategy.primary is None:
            raise FreezetuneError(
                f"malformed strategy spec {spec!r}: {parsed.name} takes no value "
                f"(options: {', '.join(strategy.options)})"
            )
        raw[strategy.primary] = parsed.positional
    unknown = [k for k in raw if k not in strategy.options]
    if unknown:
        raise FreezetuneError(
            f"strategy {parsed.name!r} has no option {unknown[0]!r}; "
            f"options: {', '.join(strategy.options)}"
        )
    values = {k: convert(v, strategy.options[k].kind, option=k, spec=spec) for k, v in raw.items()}
    return strategy, values


def check_spec(spec: str | Plan) -> None:
    """Fail fast on a bad spec, before any model is loaded (model-dependent checks come later)."""
    if not isinstance(spec, Plan):
        _parse(spec)


def resolve(spec: str | Plan, layers: LayerMap) -> Plan:
    """Turn a spec (or a ready Plan) into a validated Plan for this model."""
    if isinstance(spec, Plan):
        return spec.validate(layers)
    strategy, values = _parse(spec)
    own = {k: v for k, v in values.items() if k not in COMMON}
    plan = strategy.build(layers, **own)
    plan = _apply_common(plan, layers, values)
    return replace(plan, spec=spec.strip()).validate(layers)


def _apply_common(plan: Plan, layers: LayerMap, values: dict) -> Plan:
    changes: dict = {}
    for key in ("embeddings", "head"):
        if values.get(key) is not None:
            changes[key] = values[key]
    if values.get("modules"):
        changes["modules"] = tuple(values["modules"])
    plan = replace(plan, **changes)
    decay = values.get("lr_decay", 1.0)
    if decay != 1.0:
        plan = replace(plan, lr_multipliers=discriminative(plan, layers, decay))
    return plan


def discriminative(plan: Plan, layers: LayerMap, decay: float) -> tuple[tuple[str, float], ...]:
    """ULMFiT's discriminative rates: each trainable block below the top one gets lr / decay more."""
    if decay <= 0:
        raise FreezetuneError(f"lr_decay must be positive, got {decay}")
    top = layers.num_blocks - 1
    multipliers = [(block_unit(i), decay ** -(top - i)) for i in plan.blocks]
    if plan.embeddings:
        multipliers.append((EMBEDDINGS, decay ** -(top + 1)))
    multipliers.append((HEAD, 1.0))
    return tuple(multipliers)


def listing() -> str:
    """Every strategy with its options and one line of doc (``freezetune strategies``)."""
    lines = []
    for name in sorted(REGISTRY):
        strategy = REGISTRY[name]
        lines.append(f"{strategy.usage():<48} {strategy.doc}")
        for option in strategy.options.values():
            if option.name not in COMMON:
                primary = " (bare value allowed)" if option.name == strategy.primary else ""
                lines.append(f"    {option.name:<12} {option.help}{primary}")
    lines.append("")
    lines.append("Options every strategy takes:")
    for option in COMMON.values():
        lines.append(f"    {option.name:<12} {option.help}")
    return "\n".join(lines)
