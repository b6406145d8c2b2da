"""Compact checkpoints: only the trained tensors, plus what it takes to rebuild the rest.

A checkpoint folder holds ``trained.safetensors`` (the tensors that trained: head, trained
blocks, LoRA adapters) and ``checkpoint.json`` (task, plan, labels, pooling, base model path and a
fingerprint of the base weights, the resolved run config, sizes). Loading rebuilds the model
from the base, refuses a base whose weights differ from the one trained on, re-creates the
LoRA adapters and loads the trained tensors strictly. Exports to other formats: export.py.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn

import freezetune
from freezetune.core.atomic import atomic_write_bytes, atomic_write_text
from freezetune.core.causal_lm import load_causal_lm
from freezetune.core.config import CAUSAL_LM, CLASSIFICATION
from freezetune.core.errors import FreezetuneError
from freezetune.core.layout import LayerMap
from freezetune.core.lora import add_lora
from freezetune.core.model import load_classifier, load_tokenizer
from freezetune.core.plan import Plan
from freezetune.io.rundir import is_run
from freezetune.io.staging import Staging, check_new_folder

FORMAT = "freezetune-checkpoint"
FORMAT_VERSION = 1
META_FILE = "checkpoint.json"
TENSORS_FILE = "trained.safetensors"
CHECKPOINT_DIR = "checkpoint"  # the checkpoint's folder inside a run folder


# ---------------------------------------------------------------------- fingerprint
def base_fingerprint(backbone: nn.Module) -> str:
    """sha256 (first 16 hex digits) of the base weights: names, shapes, dtypes and float32 bytes.

    Compute it on the pretrained backbone, before training. LoRA adapters are skipped and PEFT's
    ``base_layer`` naming is undone, so an adapted but untrained model hashes like its base.
    """
    digest = hashlib.sha256()
    named = []
    for name, param in backbone.named_parameters():
        if "lora_" in name:
            continue
        named.append((name.replace(".base_layer.", "."), param))
    for name, param in sorted(named, key=lambda item: item[0]):
        tensor = param.detach().to("cpu", torch.float32).contiguous()
        digest.update(f"{name}|{tuple(tensor.shape)}|{param.dtype}\n".encode())
        digest.update(tensor.numpy().reshape(-1).view("uint8"))
    return digest.hexdigest()[:16]


# ---------------------------------------------------------------------- folders
def resolve_checkpoint(path: str | os.PathLike[str]) -> Path:
    """A checkpoint folder, or a run folder holding ``checkpoint/``; clear errors otherwise."""
    path = Path(path)
    if not path.exists():
        raise FreezetuneError(f"no such checkpoint or run folder: {path}")
    if not path.is_dir():
        raise FreezetuneError(f"{path} is a file; give a checkpoint folder or a run folder (--checkpoint)")
    if (path / META_FILE).is_file():
        return path
    if (path / CHECKPOINT_DIR / META_FILE).is_file():
        return path / CHECKPOINT_DIR
    if is_run(path):
        raise FreezetuneError(f"run folder {path} holds no checkpoint ({CHECKPOINT_DIR}/{META_FILE} is missing)")
    raise FreezetuneError(f"{path} is not a freezetune checkpoint: it has no {META_FILE}")


# ---------------------------------------------------------------------- save
def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def save_checkpoint(
    folder: str | os.PathLike[str],
    model: nn.Module,
    plan: Plan,
    *,
    base_path: str,
    gguf_file: str | None,
    base_fingerprint: str,
    label_names: list[str] | None,
    config: dict,
    trained_names: Iterable[str] | None = None,
    task: str = CLASSIFICATION,
) -> dict:
    """Write ``trained.safetensors`` + ``checkpoint.json`` into ``folder``; return the JSON dict.

    Saved: every parameter with ``requires_grad`` now, every LoRA adapter tensor, the
    ``trained_names`` given (a schedule passes the union of what trained in any phase), and every
    parameter outside the base (``backbone``), trained or not.
    ``folder`` is written atomically; an existing checkpoint there is replaced, any other
    non-empty folder is refused.
    """
    from safetensors.torch import save

    folder = Path(folder)
    if folder.exists() and not (folder / META_FILE).is_file():
        check_new_folder(folder, "the checkpoint")
    params = dict(model.named_parameters())
    names = {n for n, p in params.items() if p.requires_grad or "lora_" in n}
    names.update(trained_names or ())
    # What the base does not hold (a classifier head) is saved even untrained (head=false): a reload
    # would otherwise draw a new random head and predict differently.
    names.update(n for n in params if not n.startswith("backbone."))
    unknown = sorted(names - params.keys())
    if unknown:
        raise FreezetuneError(f"cannot save tensor {unknown[0]}: the model has no such parameter")
    has_lora = any("lora_" in n for n in params)
    if has_lora and plan.lora is None:
        raise FreezetuneError("the model carries LoRA adapters but the plan has no LoRA spec to rebuild them")
    ordered = [n for n in params if n in names]
    tensors = {n: params[n].detach().to("cpu").contiguous() for n in ordered}
    base_params = sum(p.numel() for n, p in params.items() if "lora_" not in n)
    local = Path(base_path).expanduser()
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "freezetune_version": freezetune.__version__,  # read at save time: the package is loaded by then
        "task": task,
        "plan": plan.to_dict(),
        "label_names": list(label_names or []),
        "num_labels": len(label_names or []),
        "pooling": getattr(model, "pooling", None),
        "base_model": str(local.resolve()) if local.exists() else str(base_path),
        "gguf_file": gguf_file,
        "base_fingerprint": base_fingerprint,
        "config": _jsonable(config),
        "tensors": ordered,
        "trained_params": sum(t.numel() for t in tensors.values()),
        "total_params": base_params,
        "full_model_bytes": 4 * base_params,  # a full float32 save of the (merged) model
    }
    with Staging(folder, replace_marker=META_FILE) as staging:  # the earlier checkpoint stays until this one is whole
        encoded = save(tensors, metadata={"format": "pt", "freezetune": str(FORMAT_VERSION)})
        meta["checkpoint_bytes"] = len(encoded)
        atomic_write_bytes(staging / TENSORS_FILE, encoded)
        atomic_write_text(staging / META_FILE, json.dumps(meta, indent=2) + "\n")
    return meta


# ---------------------------------------------------------------------- load
def read_meta(folder: str | os.PathLike[str]) -> tuple[Path, dict]:
    """The checkpoint folder (a run folder's ``checkpoint/`` too) and its checked JSON."""
    folder = resolve_checkpoint(folder)
    try:
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise FreezetuneError(f"checkpoint {folder} is corrupted: {META_FILE} is not valid JSON ({error})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise FreezetuneError(f"{folder / META_FILE} is not a freezetune checkpoint description")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise FreezetuneError(
            f"checkpoint {folder} has format version {meta['format_version']}; this freezetune reads "
            f"up to {FORMAT_VERSION}: upgrade freezetune"
        )
    required = ("plan", "label_names", "pooling", "base_model", "base_fingerprint", "tensors")
    missing = [key for key in required if key not in meta]
    if missing:
        raise FreezetuneError(f"checkpoint {folder} is corrupted: {META_FILE} lacks {missing[0]!r}")
    return folder, meta


def read_tensors(folder: Path, meta: dict) -> dict[str, torch.Tensor]:
    """The checkpoint's trained tensors, checked against the list its JSON names."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = folder / TENSORS_FILE
    if not path.is_file():
        raise FreezetuneError(f"checkpoint {folder} is incomplete: {TENSORS_FILE} is missing")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise FreezetuneError(
            f"checkpoint {folder} is corrupted or truncated: cannot read {TENSORS_FILE} ({reason})"
        ) from None
    if sorted(tensors) != sorted(meta["tensors"]):
        raise FreezetuneError(
            f"checkpoint {folder} is inconsistent: {TENSORS_FILE} does not hold the tensors {META_FILE} lists"
        )
    return tensors


def trusts_remote_code(meta: dict) -> bool:
    """Whether the run was told to run the base model's own code (--trust-remote-code); loads repeat it."""
    return bool((meta.get("config") or {}).get("trust_remote_code", False))


def load_base(meta: dict, base_path: str | None = None) -> nn.Module:
    """The untrained model a checkpoint's tensors go into: a classifier (fresh head) or a causal LM."""
    base, gguf_file, remote = base_path or meta["base_model"], meta.get("gguf_file"), trusts_remote_code(meta)
    if meta.get("task", CLASSIFICATION) == CAUSAL_LM:
        return load_causal_lm(base, gguf_file=gguf_file, trust_remote_code=remote)
    return load_classifier(base, len(meta["label_names"]), pooling=meta["pooling"], gguf_file=gguf_file,
                           trust_remote_code=remote)


def load_checkpoint(
    folder: str | os.PathLike[str], *, base_path: str | None = None
) -> tuple[nn.Module, Any, dict]:
    """(model in eval mode on the CPU, tokenizer, checkpoint JSON) from a checkpoint or run folder.

    ``base_path`` replaces the base model path recorded at training time (a moved folder);
    its weights must still have the recorded fingerprint.
    """
    folder, meta = read_meta(folder)
    tensors = read_tensors(folder, meta)
    base = base_path or meta["base_model"]
    gguf_file = meta.get("gguf_file")
    model = load_base(meta, base_path)
    check_base_fingerprint(meta, base_fingerprint(model.backbone), checkpoint=str(folder), base=str(base),
                           remedy="pass the base it was trained from with --model")
    plan = Plan.from_dict(meta["plan"])
    layers = LayerMap.from_model(model)
    if plan.lora is not None:
        model, layers = add_lora(model, plan.lora, layers)
    params = dict(model.named_parameters())
    tensors = {name: tensors[name] for name in meta["tensors"]}  # the model's order
    try:
        check_tensors_fit(params, tensors)
    except FreezetuneError as error:
        raise FreezetuneError(f"checkpoint {folder} does not fit base {base}: {error}") from None
    with torch.no_grad():
        for name, value in tensors.items():
            params[name].copy_(value)
    plan.apply(model, layers)
    model.eval()
    tokenizer = load_tokenizer(base, gguf_file=gguf_file, trust_remote_code=trusts_remote_code(meta))
    return model, tokenizer, meta


def check_base_fingerprint(meta: dict, found: str, *, checkpoint: str, base: str, remedy: str) -> None:
    """Refuse a checkpoint whose recorded base fingerprint is not that of the weights found at ``base``."""
    if found != meta["base_fingerprint"]:
        raise FreezetuneError(
            f"checkpoint {checkpoint} was trained on a different base model (fingerprint "
            f"{meta['base_fingerprint']} != {found} of {base}); {remedy}"
        )


def check_tensors_fit(params: dict[str, nn.Parameter], tensors: dict[str, torch.Tensor]) -> None:
    """Every checkpoint tensor names a parameter of the model, with its shape."""
    for name, value in tensors.items():
        if name not in params:
            raise FreezetuneError(f"the model has no tensor {name}")
        if tuple(params[name].shape) != tuple(value.shape):
            raise FreezetuneError(f"{name} has shape {tuple(value.shape)} in the checkpoint but "
                                  f"{tuple(params[name].shape)} in the model")


__all__ = [
    "base_fingerprint",
    "check_base_fingerprint",
    "check_tensors_fit",
    "save_checkpoint",
    "load_checkpoint",
    "read_meta",
    "read_tensors",
    "resolve_checkpoint",
]
