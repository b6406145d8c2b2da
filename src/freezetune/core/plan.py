"""Plan: the frozen, hashable record of what trains.

A plan names trainable *units* (embeddings, blocks, head), optionally narrows the trainable
blocks to module groups (attention / ffn / norm / bias), carries per-unit learning-rate
multipliers (per unit, or per tensor for tensor-level rules such as Auto-RGN) and an optional
LoRA spec. ``apply`` is the only freezetune code that sets ``requires_grad``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from torch import nn

from freezetune.core.errors import FreezetuneError
from freezetune.core.layout import EMBEDDINGS, HEAD, MODULE_GROUPS, LayerMap, block_unit, is_bias

FILTERS = (*MODULE_GROUPS, "bias")
LR_RESCALES = ("", "rgn")


@dataclass(frozen=True)
class LoraSpec:
    """LoRA adapters (through PEFT) on the linear layers of chosen blocks."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.1
    targets: tuple[str, ...] = ()  # module names; empty = the attention projections of the model
    blocks: tuple[int, ...] = ()  # empty = every block


@dataclass(frozen=True)
class Plan:
    blocks: tuple[int, ...] = ()  # blocks whose weights train (sorted)
    embeddings: bool = False
    head: bool = True
    modules: tuple[str, ...] = ()  # inside trainable blocks only these groups train; () = all
    lr_multipliers: tuple[tuple[str, float], ...] = ()  # (unit, multiplier); missing = 1
    lora: LoraSpec | None = None
    tensors: tuple[str, ...] = ()  # when set, only these tensors of the trainable blocks train
    tensor_lr_multipliers: tuple[tuple[str, float], ...] = ()  # (parameter, multiplier); overrides the unit's
    lr_rescale: str = ""  # "rgn": the trainer re-measures per-tensor multipliers every epoch (Auto-RGN)
    # keep the best evaluation that keeps this share of the pretrained skill (auto:retention=R)
    retention_floor: float | None = None
    spec: str = field(default="custom", compare=False)  # the text it was parsed from

    def __post_init__(self) -> None:
        object.__setattr__(self, "blocks", tuple(sorted(set(self.blocks))))
        object.__setattr__(self, "tensors", tuple(sorted(set(self.tensors))))
        if self.lr_rescale not in LR_RESCALES:
            choices = ", ".join(map(repr, LR_RESCALES))
            raise FreezetuneError(f"unknown lr_rescale {self.lr_rescale!r}; choose from {choices}")
        if self.retention_floor is not None and not 0 < self.retention_floor <= 1:
            raise FreezetuneError(f"retention_floor is a share of the pretrained skill in (0, 1], got "
                                  f"{self.retention_floor}")
        unknown = [m for m in self.modules if m not in FILTERS]
        if unknown:
            raise FreezetuneError(
                f"unknown module filter {unknown[0]!r}; choose from {', '.join(FILTERS)}"
            )

    # ------------------------------------------------------------------ what trains
    def validate(self, layers: LayerMap) -> Plan:
        for index in self.blocks:
            layers.check_block(index)
        allowed = {n for i in self.blocks for n in layers.units[block_unit(i)]}
        stray = [n for n in self.tensors if n not in allowed]
        if stray:
            raise FreezetuneError(f"tensor {stray[0]!r} is not in a trainable block of this plan")
        if self.lora:
            for index in self.lora.blocks:
                layers.check_block(index)
        known = {n for names in layers.units.values() for n in names}
        unknown = [n for n, _ in self.tensor_lr_multipliers if n not in known]
        if unknown:
            raise FreezetuneError(f"learning-rate multiplier for {unknown[0]!r}, which this model does not have")
        return self

    def trainable_names(self, layers: LayerMap) -> set[str]:
        """Names of the base-model parameters this plan trains (LoRA adapters excluded)."""
        self.validate(layers)
        names: set[str] = set()
        if self.embeddings:
            names.update(layers.units[EMBEDDINGS])
        if self.head:
            names.update(layers.units[HEAD])
        chosen = set(self.tensors)
        for index in self.blocks:
            for name in layers.units[block_unit(index)]:
                if chosen and name not in chosen:
                    continue
                if not self.modules or _matches(name, layers.groups[name], self.modules):
                    names.add(name)
        return names

    def trainable_blocks(self, num_blocks: int) -> tuple[int, ...]:
        """Blocks with anything trainable: their own weights or LoRA adapters."""
        lora_blocks: tuple[int, ...] = ()
        if self.lora is not None:
            lora_blocks = self.lora.blocks or tuple(range(num_blocks))
        return tuple(sorted(set(self.blocks) | set(lora_blocks)))

    def frozen_prefix_depth(self, num_blocks: int) -> int:
        """d such that the embeddings and blocks 0..d-1 are frozen; 0 when embeddings train."""
        if self.embeddings:
            return 0
        blocks = self.trainable_blocks(num_blocks)
        return blocks[0] if blocks else num_blocks

    def lr_multiplier(self, unit: str, tensor: str | None = None) -> float:
        """The rate multiplier of ``tensor`` (when it has its own) or of its ``unit``."""
        if tensor is not None and self.tensor_lr_multipliers:
            own = dict(self.tensor_lr_multipliers).get(tensor)
            if own is not None:
                return own
        return dict(self.lr_multipliers).get(unit, 1.0)

    @property
    def per_tensor_lr(self) -> bool:
        """Whether every tensor needs its own optimizer group (its own rate)."""
        return bool(self.tensor_lr_multipliers) or bool(self.lr_rescale)

    def apply(self, model: nn.Module, layers: LayerMap) -> int:
        """Set ``requires_grad`` on every parameter; return the trainable count.

        After PEFT wrapped the model (and the LayerMap was rebuilt on the wrapped model), LoRA
        adapter tensors train when their block is one the spec names; base weights follow the
        plan as usual, so a plan can mix adapters and fully trained units.
        """
        trainable = self.trainable_names(layers)
        count = 0
        for name, param in model.named_parameters():
            train = name in trainable or self._lora_trains(name, layers)
            param.requires_grad_(train)
            count += param.numel() if train else 0
        return count

    def _lora_trains(self, name: str, layers: LayerMap) -> bool:
        if self.lora is None or "lora_" not in name:
            return False
        return not self.lora.blocks or any(
            name.startswith(f"{layers.block_path}.{i}.") for i in self.lora.blocks
        )

    # ------------------------------------------------------------------ reporting
    def describe(self, layers: LayerMap) -> str:
        """Per unit: trainable / total parameters and the learning-rate multiplier."""
        trainable = self.trainable_names(layers)
        params = dict(layers.model.named_parameters())
        lines = [f"plan: {self.spec}", f"{'unit':<12} {'trains':>12} {'of':>12} {'lr x':>6}"]
        total_train = total = 0
        for unit, names in layers.units.items():
            n_all = sum(params[n].numel() for n in names)
            n_train = sum(params[n].numel() for n in names if n in trainable)
            total_train, total = total_train + n_train, total + n_all
            lines.append(
                f"{unit:<12} {n_train:>12,} {n_all:>12,} {self.lr_multiplier(unit):>6.3g}"
            )
        lines.append(f"{'total':<12} {total_train:>12,} {total:>12,}  ({total_train / total:.2%})")
        if self.tensor_lr_multipliers:
            values = [m for _, m in self.tensor_lr_multipliers]
            lines.append(f"per-tensor lr x: {len(values)} tensors, {min(values):.3g} .. {max(values):.3g}"
                         + (" (re-measured every epoch)" if self.lr_rescale else ""))
        if self.lora:
            lines.append(f"LoRA: {self.lora}")
        if self.retention_floor is not None:
            lines.append(f"retention floor: the best evaluation that keeps {self.retention_floor:.0%} of the "
                         "pretrained skill is kept")
        return "\n".join(lines)

    # ------------------------------------------------------------------ JSON round-trip
    def to_dict(self) -> dict:
        data = asdict(self)
        data["lr_multipliers"] = [list(pair) for pair in self.lr_multipliers]
        data["tensor_lr_multipliers"] = [list(pair) for pair in self.tensor_lr_multipliers]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Plan:
        data = dict(data)
        lora = data.pop("lora", None)
        return cls(
            blocks=tuple(data.pop("blocks", ())),
            modules=tuple(data.pop("modules", ())),
            tensors=tuple(data.pop("tensors", ())),
            lr_multipliers=tuple((u, float(m)) for u, m in data.pop("lr_multipliers", ())),
            tensor_lr_multipliers=tuple((n, float(m)) for n, m in data.pop("tensor_lr_multipliers", ())),
            lora=_lora_from_dict(lora),
            **data,
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Plan:
        return cls.from_dict(json.loads(text))


def _lora_from_dict(data: dict | None) -> LoraSpec | None:
    if data is None:
        return None
    return LoraSpec(
        **{**data, "targets": tuple(data.get("targets", ())), "blocks": tuple(data.get("blocks", ()))}
    )


def _matches(name: str, group: str, modules: tuple[str, ...]) -> bool:
    return group in modules or ("bias" in modules and is_bias(name))
