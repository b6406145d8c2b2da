"""Evaluation sets (``--extra-eval`` / ``--ood-set NAME=PATH``) and ``--label-map``, checked before anything loads.

An evaluation set is scored on the trained model and reported next to the test numbers; it
never takes part in model selection. ``ood`` sets are out-of-distribution data (another
domain), ``extra`` sets anything else a user wants measured. Both accept a list of
``NAME=PATH`` strings or a mapping (YAML configs, the Python API).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from freezetune.core.errors import FreezetuneError

EXTRA, OOD = "extra", "ood"
_NAME = re.compile(r"[A-Za-z0-9_.-]+")
# Names of the splits a run already reports: a set named like one would be confused with it.
RESERVED = ("train", "validation", "test")


@dataclass(frozen=True)
class EvalSetSpec:
    name: str
    path: str
    kind: str  # EXTRA or OOD


def _pairs(value: Any, option: str, example: str) -> list[tuple[str, str]]:
    """``["a=b", ...]`` or ``{"a": "b"}`` -> [("a", "b"), ...]; a malformed entry is a one-line error."""
    if not value:
        return []
    if isinstance(value, dict):
        return [(str(k).strip(), str(v).strip()) for k, v in value.items()]
    entries = [value] if isinstance(value, str) else list(value)
    out = []
    for entry in entries:
        key, sep, rest = str(entry).partition("=")
        if not sep or not key.strip() or not rest.strip():
            raise FreezetuneError(f"{option} takes {example}, got {str(entry)!r}")
        out.append((key.strip(), rest.strip()))
    return out


def eval_set_specs(extra_eval: Any, ood_set: Any) -> list[EvalSetSpec]:
    """The evaluation sets, in the order given (extra first); names and paths checked."""
    specs = []
    for kind, value in ((EXTRA, extra_eval), (OOD, ood_set)):
        option = "--ood-set" if kind == OOD else "--extra-eval"
        for name, path in _pairs(value, option, "NAME=PATH (e.g. reviews=reviews.csv)"):
            if not _NAME.fullmatch(name):
                raise FreezetuneError(f"{option} name {name!r} may hold only letters, digits, '_', '.' and '-'")
            if name in RESERVED:
                raise FreezetuneError(f"{option} name {name!r} is taken by the run's own split: choose another name")
            if any(s.name == name for s in specs):
                raise FreezetuneError(f"the evaluation set name {name!r} is given twice: --extra-eval and --ood-set "
                                      "names must be unique")
            if not Path(path).is_file():
                raise FreezetuneError(f"{option} {name}: no such file: {path}")
            specs.append(EvalSetSpec(name, path, kind))
    return specs


def parse_label_map(value: Any) -> dict[str, str]:
    """``["pos=positive,neg=negative"]`` (entries may hold several, comma-separated) or a mapping -> {old: new}."""
    if isinstance(value, (list, tuple)):
        value = [part for entry in value for part in str(entry).split(",") if part.strip()]
    elif isinstance(value, str):
        value = [part for part in value.split(",") if part.strip()]
    mapping: dict[str, str] = {}
    for old, new in _pairs(value, "--label-map", "OLD=NEW pairs (e.g. pos=positive,neg=negative)"):
        if mapping.get(old, new) != new:
            raise FreezetuneError(f"--label-map maps {old!r} twice ({mapping[old]!r} and {new!r}): keep one")
        mapping[old] = new
    return mapping
