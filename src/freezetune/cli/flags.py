"""Flags derived from the config dataclasses, YAML configs with the same keys, and the strategy help.

Flags come from the dataclasses in core/config.py, so ``--help``, YAML keys and the Python API
never drift apart. Precedence: defaults < ``--config FILE.yaml`` < flags.
"""

from __future__ import annotations

import argparse
import types
import typing
from dataclasses import fields
from pathlib import Path

from freezetune.core.config import DataConfig, ModelConfig, TrainConfig, field_help
from freezetune.core.errors import FreezetuneError, did_you_mean

STRATEGY_HELP = (
    "what trains, in the plan-spec grammar NAME[:VALUE][:KEY=VALUE...]: full, head_only, "
    "lower_half, alternate (blocks 0,2,4,... and embeddings frozen), top_k:2, depth:3, "
    "layers:0,3,10-12, attention|ffn|norm|bias (BitFit), lora:r=8:blocks=4,5, "
    "auto (scores blocks on the data and picks; budget=0.25 caps the cost, retention=0.8 keeps 80%% of the "
    "pretrained skill, method=race trains candidates briefly); schedules: lift, gradual_unfreeze, "
    "lisa:2, hft, autofreeze (docs/schedules.md); options for all plans: "
    "embeddings=true, head=false, modules=attention+norm, lr_decay=2.6. Blocks are numbered "
    "from 0 at the input. `freezetune strategies` lists everything"
)


def _base_type(annotation) -> type:
    """``int | None`` -> int; ``str`` -> str."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return next(a for a in typing.get_args(annotation) if a is not type(None))
    return annotation


def _optional(kind: type):
    def convert(text: str):
        return None if text.lower() in ("none", "null") else kind(text)

    convert.__name__ = kind.__name__
    return convert


def add_dataclass_flags(parser: argparse.ArgumentParser, cls, title: str) -> None:
    group = parser.add_argument_group(title, cls.__doc__)
    hints = typing.get_type_hints(cls)
    for name, info in field_help(cls).items():
        kind = _base_type(hints[name])
        flag = f"--{name.replace('_', '-')}"
        choices = f"; one of {', '.join(info['choices'])}" if info.get("choices") else ""
        default = info["default"] if info["default"] != [] else "none"
        help_text = f"{info['help']} (default: {default}{choices})".replace("%", "%%")  # argparse formats %
        aliases = [f"--{name}"] if "_" in name else []  # YAML-style spelling works too
        if kind is bool:
            group.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, help=help_text)
        elif typing.get_origin(kind) is list:  # a repeatable flag: each use adds one item
            (item,) = typing.get_args(kind)
            group.add_argument(flag, *aliases, dest=name, action="append", type=item, help=help_text,
                               metavar=info.get("metavar") or item.__name__.upper())
        else:
            group.add_argument(
                # "none" means None, except where it is one of the choices (--retention none)
                flag, *aliases, dest=name, type=kind if info.get("choices") else _optional(kind),
                choices=info.get("choices"), help=help_text, metavar=info.get("metavar") or kind.__name__.upper(),
            )
        parser.set_defaults(**{name: info["default"]})


def add_run_flags(parser: argparse.ArgumentParser) -> None:
    """The data, model and training flags every training command shares."""
    add_dataclass_flags(parser, DataConfig, "data")
    add_dataclass_flags(parser, ModelConfig, "model")
    add_dataclass_flags(parser, TrainConfig, "training")


def add_checkpoint_flags(parser: argparse.ArgumentParser) -> None:
    """--checkpoint and --model, as every command that reads a trained checkpoint takes them."""
    parser.add_argument("--checkpoint", required=True, metavar="RUN_OR_CKPT",
                        help="checkpoint folder, or a run folder holding checkpoint/")
    parser.add_argument("--model", default=None, metavar="PATH",
                        help="base model folder, when it moved since training (default: the path recorded in the "
                             "checkpoint; its weights must match the checkpoint's fingerprint)")


def add_config_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML file whose keys are these flags' names; flags override it")


def config_values(path: str, parser: argparse.ArgumentParser) -> dict:
    """Read a YAML config; its keys are the flags' names (dashes or underscores).

    Safe-loaded: a Python tag (``!!python/object``) is refused, never run.
    """
    import yaml

    file = Path(path)
    if not file.is_file():
        raise FreezetuneError(f"no such config file: {path}" if not file.exists() else
                              f"{path} is a folder; give a YAML file to --config")
    try:
        values = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError:
        raise FreezetuneError(f"{path} is not a text file; give a YAML file to --config") from None
    except yaml.YAMLError as error:
        raise FreezetuneError(f"{path} is not valid YAML: {_yaml_reason(error)}") from None
    if not isinstance(values, dict):
        raise FreezetuneError(f"{path} must be a mapping of option: value (e.g. `epochs: 3`), "
                              f"not a {type(values).__name__}")
    known = sorted({a.dest for a in parser._actions} - {"help", "run", "config"})
    values = {str(k).replace("-", "_"): v for k, v in values.items()}
    unknown = sorted(set(values) - set(known) - {"config"})
    if unknown:
        named = "; ".join(f"{k!r}{did_you_mean(k, known)}" for k in unknown)
        raise FreezetuneError(f"{path}: unknown key{'s' * (len(unknown) > 1)} {named} (keys are the flag names "
                              "of `freezetune train --help`)")
    repeatable = {a.dest for a in parser._actions if isinstance(a, argparse._AppendAction)}
    return {k: _as_list(v) if k in repeatable else v for k, v in values.items()}


def _as_list(value) -> list[str]:
    """A repeatable flag's YAML value: a list, one value, or a mapping written as NAME=VALUE items."""
    if value is None:
        return []
    if isinstance(value, dict):
        return [f"{k}={v}" for k, v in value.items()]
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _yaml_reason(error) -> str:
    """The YAML error in a few words, with its line; a Python tag is named as what it is."""
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    if "python/" in problem:
        return "it uses a Python tag (!!python/...), which configs may not hold; write plain values"
    mark = getattr(error, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{problem}{where}"


def pick(namespace: argparse.Namespace, cls):
    """The dataclass ``cls`` filled from the parsed flags of the same names."""
    return cls(**{f.name: getattr(namespace, f.name) for f in fields(cls)})
