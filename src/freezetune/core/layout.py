"""LayerMap: the units of a transformer — embeddings, blocks 0..L-1 (0 nearest the input), head.

Every parameter belongs to exactly one unit, and that is asserted, not assumed. The map is
found structurally, so it works for any Hugging Face model built the usual way:

* the *block list* is the ``nn.ModuleList`` whose length is the configured number of layers
  (the shallowest one when several match);
* parameters registered before the first block are the *embeddings*; those after the last
  block are the *head* (final norm, pooler, classifier, ``lm_head``);
* a tensor shared by two units (a decoder's input embedding and its ``lm_head``) belongs to the
  embeddings unit, where it is registered first; its alias is recorded in ``tied``.

Inside a block each parameter also gets a *module group*: ``norm`` (its module is a norm layer),
``attention`` (its path mentions attention), or ``ffn`` (everything else). Bias tensors are
recognised by name for BitFit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from freezetune.core.errors import FreezetuneError

EMBEDDINGS = "embeddings"
HEAD = "head"
MODULE_GROUPS = ("attention", "ffn", "norm")
_LAYER_COUNT_KEYS = ("num_hidden_layers", "n_layer", "num_layers", "n_layers")


def block_unit(index: int) -> str:
    return f"block.{index}"


@dataclass
class LayerMap:
    """Where each parameter of ``model`` lives. Build it with :meth:`from_model`."""

    model: nn.Module
    block_path: str  # dotted path of the block ModuleList, e.g. "backbone.encoder.layer"
    units: dict[str, list[str]]  # unit name -> parameter names, in registration order
    groups: dict[str, str]  # block parameter name -> "attention" | "ffn" | "norm"
    tied: dict[str, str] = field(default_factory=dict)  # alias name -> owner name

    # ------------------------------------------------------------------ building
    @classmethod
    def from_model(cls, model: nn.Module) -> LayerMap:
        block_path, blocks = find_blocks(model)
        units: dict[str, list[str]] = {EMBEDDINGS: []}
        units.update({block_unit(i): [] for i in range(len(blocks))})
        units[HEAD] = []
        groups: dict[str, str] = {}
        tied: dict[str, str] = {}
        owner_by_id: dict[int, str] = {}
        seen_block = False
        prefix = block_path + "."
        for name, param in model.named_parameters(remove_duplicate=False):
            if id(param) in owner_by_id:
                tied[name] = owner_by_id[id(param)]
                continue
            owner_by_id[id(param)] = name
            if name.startswith(prefix):
                index = int(name[len(prefix) :].split(".", 1)[0])
                units[block_unit(index)].append(name)
                groups[name] = _module_group(model, name, prefix)
                seen_block = True
            else:
                units[HEAD if seen_block else EMBEDDINGS].append(name)
        layer_map = cls(model, block_path, units, groups, tied)
        layer_map._check_partition()
        return layer_map

    def _check_partition(self) -> None:
        """Every parameter in exactly one unit; no block shares a tensor with another unit."""
        names = [n for unit in self.units.values() for n in unit]
        expected = [n for n, _ in self.model.named_parameters()]
        assert sorted(names) == sorted(expected), "LayerMap lost or duplicated a parameter"
        for alias, owner in self.tied.items():
            if self.unit_of(owner).startswith("block.") or alias.startswith(self.block_path + "."):
                raise FreezetuneError(
                    f"blocks of this model share weights ({alias} is {owner}); "
                    "per-block freezing is undefined for it: pick a model with independent blocks"
                )

    # ------------------------------------------------------------------ queries
    @property
    def blocks(self) -> nn.ModuleList:
        return self.model.get_submodule(self.block_path)

    @property
    def num_blocks(self) -> int:
        return len(self.units) - 2

    def unit_names(self) -> list[str]:
        return list(self.units)

    def unit_of(self, param_name: str) -> str:
        param_name = self.tied.get(param_name, param_name)
        for unit, names in self.units.items():
            if param_name in names:
                return unit
        raise KeyError(param_name)

    def unit_for(self, param_name: str) -> str:
        """The unit of any parameter, adapter tensors added (by PEFT) after the map was built included:
        those under the block list go with their block, any other unknown one with the head."""
        prefix = self.block_path + "."
        if param_name.startswith(prefix):
            return block_unit(int(param_name[len(prefix):].split(".", 1)[0]))
        try:
            return self.unit_of(param_name)
        except KeyError:
            return HEAD

    def block_of_tensor(self) -> dict[str, int]:
        """Block index of every block parameter (embeddings and head tensors are absent)."""
        return {n: i for i in range(self.num_blocks) for n in self.units[block_unit(i)]}

    def parameters(self, unit: str) -> list[tuple[str, nn.Parameter]]:
        params = dict(self.model.named_parameters())
        return [(n, params[n]) for n in self.units[unit]]

    def counts(self) -> dict[str, int]:
        """Parameters per unit (tied tensors counted once, in the embeddings)."""
        params = dict(self.model.named_parameters())
        return {unit: sum(params[n].numel() for n in names) for unit, names in self.units.items()}

    def total(self) -> int:
        return sum(self.counts().values())

    def check_block(self, index: int) -> None:
        if not 0 <= index < self.num_blocks:
            raise FreezetuneError(
                f"block {index} is out of range: this model has blocks 0..{self.num_blocks - 1} "
                "(0 is nearest the input)"
            )

    def prefix_modules(self, depth: int) -> list[nn.Module]:
        """Modules that run before block ``depth``: the embedding leaves and blocks 0..depth-1.

        Leaves registered before the block list include dropouts that live beside the
        embeddings (GPT-2's ``transformer.drop``), which must go to eval mode with them.
        """
        modules: list[nn.Module] = []
        for name, module in self.model.named_modules():
            if name == self.block_path or name.startswith(self.block_path + "."):
                break
            if not list(module.children()) and not self.block_path.startswith(name + "."):
                modules.append(module)
        return modules + list(self.blocks[:depth])

    def describe(self) -> str:
        """A table of units and their parameter counts."""
        counts = self.counts()
        total = sum(counts.values())
        lines = [f"{'unit':<12} {'parameters':>12} {'share':>7}"]
        for unit, count in counts.items():
            lines.append(f"{unit:<12} {count:>12,} {count / total:>7.1%}")
        lines.append(f"{'total':<12} {total:>12,}")
        if self.tied:
            aliases = ", ".join(f"{a} = {o}" for a, o in self.tied.items())
            lines.append(f"tied (counted in embeddings): {aliases}")
        lines.append(f"blocks found at: {self.block_path}")
        return "\n".join(lines)


def _configured_layers(model: nn.Module) -> int | None:
    config = getattr(model, "config", None)
    for key in _LAYER_COUNT_KEYS:
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def find_blocks(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The block list: the shallowest ModuleList of same-typed modules, of the configured length."""
    expected = _configured_layers(model)
    candidates = []
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0:
            if len({type(child) for child in module}) == 1:
                candidates.append((name.count("."), name, module))
    if expected is not None:
        matching = [c for c in candidates if len(c[2]) == expected]
        if matching:
            _, name, module = min(matching, key=lambda c: c[0])
            return name, module
        shorter = [c for c in candidates if len(c[2]) < expected and expected % len(c[2]) == 0]
        if shorter:
            raise FreezetuneError(
                f"{type(model).__name__} has {expected} layers but only {len(shorter[0][2])} "
                "distinct block(s): its blocks share weights (as in ALBERT), so freezing one "
                "freezes all; pick a model with independent blocks"
            )
    elif candidates:
        _, name, module = max(candidates, key=lambda c: len(c[2]))
        return name, module
    raise FreezetuneError(
        f"cannot find the transformer blocks of {type(model).__name__}: no list of "
        f"{expected or 'repeated'} same-typed layers; supported: BERT-, GPT-2- and Llama-style models"
    )


def _module_group(model: nn.Module, param_name: str, block_prefix: str) -> str:
    module_path, _ = param_name.rsplit(".", 1)
    module = model.get_submodule(module_path)
    if "norm" in type(module).__name__.lower() or isinstance(module, nn.LayerNorm):
        return "norm"
    inside = param_name[len(block_prefix) :].lower()
    if "attn" in inside or "attention" in inside:
        return "attention"
    return "ffn"


def is_bias(param_name: str) -> bool:
    return param_name.endswith(".bias") or param_name == "bias"


def trainable_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def frozen_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Copies of the frozen parameters, for bit-identity checks after training."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
