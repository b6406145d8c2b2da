"""Strategies by name: ``name -> function(LayerMap, **options) -> Plan``, and their resolution.

Strategies register themselves with :func:`register` (a name registered twice is refused);
option types and defaults come from the function's signature, so the spec grammar, ``--help``
and ``freezetune strategies`` never drift apart. Every strategy also takes the common options
(``embeddings``, ``head``, ``modules``, ``lr_decay``). Block numbering is 0-based from the input.

Most strategies need only the model's layout. Those that measure the model first (``auto``,
``auto_rgn``, registered by the scoring layer) declare ``needs_context=True`` and receive a
:class:`ResolveContext`: the model, the task and a labelled sample, handed over explicitly by
whoever runs training, and a place to leave what they measured.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, get_type_hints

from torch import nn

from freezetune.core.errors import FreezetuneError, did_you_mean
from freezetune.core.layout import LayerMap
from freezetune.core.plan import Plan
from freezetune.core.spec import Names, convert, format_value, parse_spec
from freezetune.strategies.lr_policy import discriminative
from freezetune.strategies.schedules import Schedule
from freezetune.tasks.task import Task


@dataclass(frozen=True)
class Option:
    name: str
    kind: type
    default: object
    help: str
    choices: tuple[str, ...] = ()  # the values it takes, when they are a fixed set of names


@dataclass(frozen=True)
class Strategy:
    name: str
    build: Callable[..., Plan]
    doc: str
    options: dict[str, Option]
    primary: str | None
    needs_context: bool = False
    schedule: bool = False  # builds a Schedule (plans that change while training), not a Plan
    # A measuring strategy's cheap checks of its options against the layout, run before any model
    # loads (on the layout of an empty model): ``check(layers, **options)`` raises FreezetuneError.
    check: Callable[..., None] | None = None

    def usage(self) -> str:
        parts = [self.name]
        for option in self.options.values():
            # An option without a default (None, "") is optional; its help line says what it does.
            if (self.schedule or option.name not in COMMON) and option.default not in (None, ""):
                parts.append(f"{option.name}={format_value(option.default)}")
        return ":".join(parts)


@dataclass
class ResolveContext:
    """What a measuring strategy needs besides the layout, and what it leaves behind.

    ``sample`` is a list of labelled, padded batches (or a function that makes them, called on
    first use, so runs whose strategy measures nothing never pay for it). ``selections`` gets
    one entry per measurement: ``{"scores": ..., "explanation": str}``.
    """

    model: nn.Module | None = None
    task: Task | None = None
    sample: Sequence[dict] | Callable[[], Sequence[dict]] | None = None
    selections: list[dict[str, Any]] = field(default_factory=list)
    # What a strategy that trains candidates (auto:method=race) needs besides the sample:
    train: Any = None  # the tokenized training data set
    validation: Any = None  # the tokenized validation data set
    config: Any = None  # the run's TrainConfig (steps, batch size, selection metric)
    pad_token_id: int = 0
    cache_store: Any = None  # frozen-prefix caches shared with the run
    retention: Callable[[nn.Module], float] | None = None  # share of the base model's skill a model keeps

    def batches(self, strategy: str) -> list[dict]:
        if self.sample is None:
            raise FreezetuneError(
                f"{strategy} scores the model on labelled data: pass a sample (Finetuner(..., sample=train_data)) "
                "or train through `freezetune train`"
            )
        if callable(self.sample):
            self.sample = self.sample()
        return list(self.sample)


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


def register(name: str, *, primary: str | None = None, help: dict[str, str] | None = None,
             needs_context: bool = False, schedule: bool = False, choices: dict[str, Sequence[str]] | None = None,
             check: Callable[..., None] | None = None):
    """Register ``fn(layers, [context,] **options) -> Plan`` under ``name`` (once).

    ``schedule=True``: ``fn`` returns a Schedule; it takes only its own options (the common ones
    describe one plan, a schedule decides its plans itself). ``choices``: option -> the names it
    takes (checked with the spec, before any model loads). ``check``: see ``Strategy.check``.
    """

    def decorate(fn: Callable[..., Plan]) -> Callable[..., Plan]:
        if name in REGISTRY:
            first = REGISTRY[name].build.__module__
            raise ValueError(f"strategy {name!r} is registered twice ({first} and {fn.__module__})")
        hints = get_type_hints(fn)
        options = {}
        skip = 2 if needs_context else 1  # (layers[, context])
        for param in list(inspect.signature(fn).parameters.values())[skip:]:
            options[param.name] = Option(param.name, hints[param.name], param.default, (help or {}).get(param.name, ""),
                                         tuple((choices or {}).get(param.name, ())))
        summary = (inspect.getdoc(fn) or name).splitlines()[0]
        common = {} if schedule else COMMON
        REGISTRY[name] = Strategy(name, fn, summary, {**options, **common}, primary, needs_context, schedule, check)
        return fn

    return decorate


# ---------------------------------------------------------------------- resolution
def _parse(spec: str) -> tuple[Strategy, dict]:
    """Look the name up and convert every option to its declared type."""
    parsed = parse_spec(spec)
    strategy = REGISTRY.get(parsed.name)
    if strategy is None:
        raise FreezetuneError(f"unknown strategy {parsed.name!r}{did_you_mean(parsed.name, REGISTRY)}; known: "
                              f"{', '.join(sorted(REGISTRY))} (`freezetune strategies` lists them)")
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
            f"strategy {parsed.name!r} has no option {unknown[0]!r}{did_you_mean(unknown[0], strategy.options)}; "
            f"options: {', '.join(strategy.options)}"
        )
    values = {k: convert(v, strategy.options[k].kind, option=k, spec=spec) for k, v in raw.items()}
    for key, value in values.items():
        names = strategy.options[key].choices
        if names and value not in names:
            raise FreezetuneError(
                f"unknown {key} {value!r} in {spec!r}{did_you_mean(value, names)}; choose from {', '.join(names)}"
            )
    return strategy, values


def check_spec(spec: str | Plan) -> None:
    """Fail fast on a bad spec, before any model is loaded (model-dependent checks come later)."""
    if not isinstance(spec, Plan):
        _parse(spec)


def check_fits(spec: str | Plan, layers: LayerMap) -> None:
    """Fail on a spec this model cannot take (a block out of range, a budget too small), before its
    weights load: ``layers`` may map an empty model (built on the meta device from its config).
    Static plans and schedules resolve in full; measuring strategies run their ``check``."""
    if isinstance(spec, Plan):
        spec.validate(layers)
        return
    strategy, values = _parse(spec)
    if not strategy.needs_context:
        resolve(spec, layers)
    elif strategy.check is not None:
        strategy.check(layers, **{k: v for k, v in values.items() if k not in COMMON})


def needs_context(spec: str | Plan) -> bool:
    """Whether resolving ``spec`` measures the model (and so needs a :class:`ResolveContext`)."""
    return not isinstance(spec, Plan) and _parse(spec)[0].needs_context


def resolve(spec: str | Plan, layers: LayerMap, context: ResolveContext | None = None) -> Plan | Schedule:
    """Turn a spec (or a ready Plan) into a validated Plan (or a Schedule) for this model."""
    if isinstance(spec, Plan):
        return spec.validate(layers)
    strategy, values = _parse(spec)
    if strategy.schedule:
        return strategy.build(layers, **values)
    own = {k: v for k, v in values.items() if k not in COMMON}
    if strategy.needs_context:
        plan = strategy.build(layers, context or ResolveContext(model=layers.model), **own)
    else:
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


def listing() -> str:
    """Every strategy with its options and one line of doc (``freezetune strategies``)."""
    lines = []
    for name in sorted(REGISTRY):
        strategy = REGISTRY[name]
        lines.append(f"{strategy.usage():<48} {strategy.doc}")
        for option in strategy.options.values():
            if strategy.schedule or option.name not in COMMON:
                primary = " (bare value allowed)" if option.name == strategy.primary else ""
                lines.append(f"    {option.name:<12} {option.help}{primary}")
    lines.append("")
    lines.append("Options every strategy takes (schedules excepted: they choose their own plans):")
    for option in COMMON.values():
        lines.append(f"    {option.name:<12} {option.help}")
    return "\n".join(lines)
