"""Nested state on disk as safetensors + JSON: tensors in one file, the rest readable, nothing pickled.

``save_tree`` splits a tree of dicts, lists, tuples, numbers, strings and tensors. Each tensor
goes into ``<name>-<token>.safetensors`` under its path in the tree; everything else goes into
``<name>.json``, which names that tensors file. The JSON is written last, so it is the commit
point: a process killed between the two writes leaves the previous pair whole. Loading parses
JSON and safetensors only, so a state file can never run code.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import numpy as np
import torch

from freezetune.core.atomic import atomic_write_bytes, atomic_write_text
from freezetune.core.errors import FreezetuneError

# Tags for what JSON cannot say by itself.
TENSOR, TUPLE, ITEMS, ARRAY = "$tensor", "$tuple", "$items", "$array"


def save_tree(folder: str | Path, name: str, tree: Any, *, format: int) -> Path:
    """Write ``tree`` as ``<name>.json`` + its tensors file in ``folder``; return the JSON's path."""
    from safetensors.torch import save

    folder = Path(folder)
    tensors: dict[str, torch.Tensor] = {}
    encoded = _encode(tree, name, tensors)
    tensor_file = f"{name}-{secrets.token_hex(4)}.safetensors"
    atomic_write_bytes(folder / tensor_file, save(tensors))
    index = folder / f"{name}.json"
    atomic_write_text(index, json.dumps({"format": format, "tensors": tensor_file, "tree": encoded}) + "\n")
    for old in folder.glob(f"{name}-*.safetensors"):  # the pair this one replaces
        if old.name != tensor_file:
            old.unlink(missing_ok=True)
    return index


def load_tree(folder: str | Path, name: str) -> tuple[int | None, Any]:
    """(format, tree) saved by ``save_tree``; a clear error when either file is damaged."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    index = Path(folder) / f"{name}.json"
    try:
        saved = json.loads(index.read_text(encoding="utf-8"))
        tensors = load_file(str(Path(folder) / saved["tensors"]))
        return saved.get("format"), _decode(saved["tree"], tensors)
    except (ValueError, KeyError, TypeError, OSError, SafetensorError) as error:
        raise FreezetuneError(f"cannot read {index}: {type(error).__name__}; the state is corrupted") from None


def _encode(obj: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        key = path if path not in tensors else f"{path}#{len(tensors)}"
        tensors[key] = obj.detach().to("cpu").contiguous()
        return {TENSOR: key}
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in obj):
            return {k: _encode(v, f"{path}/{k}", tensors) for k, v in obj.items()}
        return {ITEMS: [[_encode(k, path, tensors), _encode(v, f"{path}/{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {TUPLE: [_encode(v, f"{path}/{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, f"{path}/{i}", tensors) for i, v in enumerate(obj)]
    if isinstance(obj, np.ndarray):
        return {ARRAY: obj.tolist(), "dtype": obj.dtype.str}
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot save a {type(obj).__name__} at {path}: state holds numbers, strings, lists, dicts "
                    "and tensors")


def _decode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if TENSOR in obj:
        return tensors[obj[TENSOR]]
    if TUPLE in obj:
        return tuple(_decode(v, tensors) for v in obj[TUPLE])
    if ITEMS in obj:
        return {_decode(k, tensors): _decode(v, tensors) for k, v in obj[ITEMS]}
    if ARRAY in obj:
        return np.array(obj[ARRAY], dtype=np.dtype(obj["dtype"]))
    return {k: _decode(v, tensors) for k, v in obj.items()}
