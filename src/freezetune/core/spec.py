"""The one plan-spec grammar, shared by ``train --strategy``, ``compare``, YAML and Python.

    SPEC   := NAME (":" ITEM)*
    ITEM   := KEY "=" VALUE | VALUE          (a bare VALUE, first only, sets the primary option)
    VALUE  := int | float | true/false | block list "0,3,10-12" | names "attention+norm"

Examples: ``full``, ``top_k:2``, ``layers:0,3,10-12``, ``layers:blocks=4-5:modules=attention``,
``bias`` (BitFit), ``lora:r=8:blocks=4,5``, ``lower_half:lr_decay=2.6:head=false``.

Colons separate options and commas live only inside block lists, so a spec never needs
quoting in a shell and ``compare`` lists several specs with a repeated ``--strategy`` flag
(or a YAML list) without any ambiguity.
"""

from __future__ import annotations

import re
import types
from dataclasses import dataclass

from freezetune.core.errors import FreezetuneError

BlockList = tuple[int, ...]
Names = tuple[str, ...]

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_RANGE = re.compile(r"^(\d+)-(\d+)$")


@dataclass(frozen=True)
class ParsedSpec:
    name: str
    positional: str | None
    options: dict[str, str]


def parse_spec(text: str) -> ParsedSpec:
    """Split a spec into its name, optional primary value and ``key=value`` options (raw)."""
    if not isinstance(text, str) or not text.strip():
        raise FreezetuneError("empty strategy spec; give a name such as 'top_k:2' (see `freezetune strategies`)")
    name, *items = [part.strip() for part in text.strip().split(":")]
    if not _NAME.match(name):
        raise FreezetuneError(
            f"malformed strategy spec {text!r}: {name!r} is not a strategy name; "
            "write NAME[:VALUE][:KEY=VALUE...], e.g. 'layers:0,3,10-12:modules=attention'"
        )
    positional: str | None = None
    options: dict[str, str] = {}
    for position, item in enumerate(items):
        if not item:
            raise FreezetuneError(f"malformed strategy spec {text!r}: empty item between colons")
        key, sep, value = item.partition("=")
        if not sep:
            if position != 0:
                raise FreezetuneError(
                    f"malformed strategy spec {text!r}: {item!r} needs a key (KEY=VALUE); "
                    "only the first item may be a bare value"
                )
            positional = item
            continue
        key, value = key.strip(), value.strip()
        if not _NAME.match(key) or not value:
            raise FreezetuneError(f"malformed strategy spec {text!r}: bad option {item!r} (want KEY=VALUE)")
        if key in options:
            raise FreezetuneError(f"malformed strategy spec {text!r}: option {key!r} given twice")
        options[key] = value
    return ParsedSpec(name, positional, options)


def parse_blocks(text: str) -> BlockList:
    """``"0,3,10-12"`` -> ``(0, 3, 10, 11, 12)``; ``"none"`` or ``""`` -> ``()``."""
    if text.strip().lower() in ("", "none"):
        return ()
    blocks: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        match = _RANGE.match(part)
        if match:
            low, high = int(match.group(1)), int(match.group(2))
            if low > high:
                raise FreezetuneError(f"block range {part!r} runs backwards; write {high}-{low}")
            blocks.update(range(low, high + 1))
        elif part.isdigit():
            blocks.add(int(part))
        else:
            raise FreezetuneError(
                f"bad block list {text!r}: {part!r} is not a block index or range (e.g. 0,3,10-12)"
            )
    return tuple(sorted(blocks))


def parse_names(text: str) -> Names:
    """``"attention+norm"`` -> ``("attention", "norm")``."""
    return tuple(part.strip() for part in text.split("+") if part.strip())


def parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "yes", "on", "1"):
        return True
    if lowered in ("false", "no", "off", "0"):
        return False
    raise FreezetuneError(f"{text!r} is not a boolean; write true or false")


def convert(value: str, kind: type, *, option: str, spec: str):
    """Turn a raw option value into the option's declared type, with a clear error."""
    if isinstance(kind, types.UnionType):  # "float | None": an optional option takes its real type
        kind = next(k for k in kind.__args__ if k is not type(None))
    try:
        if kind is bool:
            return parse_bool(value)
        if kind is int:
            return int(value)
        if kind is float:
            return float(value)
        if kind == BlockList:
            return parse_blocks(value)
        if kind == Names:
            return parse_names(value)
        return value
    except ValueError:
        raise FreezetuneError(
            f"malformed strategy spec {spec!r}: option {option}={value!r} should be {getattr(kind, '__name__', kind)}"
        ) from None


def format_value(value) -> str:
    """Inverse of :func:`convert`, for writing specs back out (reports, YAML)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        if all(isinstance(v, int) for v in value):
            return ",".join(str(v) for v in value) or "none"
        return "+".join(value)
    return str(value)
