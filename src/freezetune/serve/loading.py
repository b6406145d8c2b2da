"""Loading many checkpoints onto few bases: each base model once, each checkpoint only its trained tensors.

Checkpoints are grouped by the base they name (folder, GGUF file, task kind). A base loads once;
every task on it is a ``shared_copy`` of it (sharing.py) that holds its own trained tensors and
LoRA adapters. Everything is checked before the server listens: a missing base, a fingerprint
that differs (the checkpoint was trained on other weights), a tensor the base lacks, a name given
twice, all fail here as one ``FreezetuneError`` line naming the checkpoint.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from freezetune.core.causal_lm import load_causal_lm
from freezetune.core.config import CAUSAL_LM, CLASSIFICATION
from freezetune.core.errors import FreezetuneError
from freezetune.core.layout import EMBEDDINGS, LayerMap
from freezetune.core.logs import held_logs
from freezetune.core.lora import add_lora
from freezetune.core.model import SequenceClassifier, check_model_folder, load_classifier, load_tokenizer
from freezetune.core.plan import Plan
from freezetune.io.checkpoint import (
    base_fingerprint,
    check_base_fingerprint,
    read_meta,
    read_tensors,
    trusts_remote_code,
)
from freezetune.io.lm_data import PromptFormat
from freezetune.io.rundir import is_run
from freezetune.serve.sharing import own_bytes, put_tensors, shared_copy

log = logging.getLogger("freezetune.serve")

DEFAULT_MAX_LENGTH = 128  # what predict uses when the run recorded none
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


@dataclass
class ServedTask:
    """One checkpoint as the server runs it."""

    name: str
    folder: Path
    meta: dict
    model: nn.Module  # a shared copy of its base with its own trained tensors
    layers: LayerMap
    depth: int  # blocks 0..depth-1 (and the embeddings) are the base's: the trunk it shares
    own_bytes: int  # what this task adds to its base
    max_length: int
    metrics: dict | None = None
    prompt_format: PromptFormat | None = None  # causal LM only

    @property
    def kind(self) -> str:
        return self.meta.get("task", CLASSIFICATION)

    @property
    def labels(self) -> list[str]:
        return list(self.meta["label_names"])

    @property
    def pair(self) -> bool:
        """Whether it classifies text pairs (trained with a second text column)."""
        return bool((self.meta.get("config") or {}).get("text_pair_column"))

    def describe(self, base: Base) -> dict[str, Any]:
        plan = self.meta["plan"]
        blocks = sorted({int(u.split(".")[1]) for u in map(self.layers.unit_for, self.meta["tensors"])
                         if u.startswith("block.")})
        return {
            "id": self.name, "object": "model", "owned_by": "freezetune", "task": self.kind,
            "checkpoint": str(self.folder), "base_model": base.path, "base_fingerprint": base.fingerprint,
            "plan": {"spec": plan.get("spec"), **plan},
            "trained": {
                "blocks": blocks,
                "embeddings": any(self.layers.unit_for(n) == EMBEDDINGS for n in self.meta["tensors"]),
                "head": True if self.kind == CLASSIFICATION else bool(plan.get("head")),
                "lora": plan.get("lora"),
                "tensors": len(self.meta["tensors"]),
                "parameters": self.meta.get("trained_params"),
                "bytes": self.own_bytes,
            },
            "shared_blocks": self.depth,
            "num_blocks": self.layers.num_blocks,
            "labels": self.labels if self.kind == CLASSIFICATION else None,
            "pair": self.pair if self.kind == CLASSIFICATION else None,
            "max_input_tokens": self.max_length,
            "metrics": self.metrics,
        }


@dataclass
class Base:
    """One base model in memory and the tasks that run on it."""

    path: str
    kind: str
    model: nn.Module  # a SequenceClassifier (pooler kept) or a CausalLM: the trunk runs its backbone
    layers: LayerMap
    tokenizer: Any
    fingerprint: str
    tasks: dict[str, ServedTask] = field(default_factory=dict)
    bytes: int = 0
    fingerprints: dict[tuple, str] = field(default_factory=dict)  # by parameter names: with a pooler or not

    def describe(self) -> dict[str, Any]:
        return {"base_model": self.path, "task": self.kind, "fingerprint": self.fingerprint,
                "bytes": self.bytes, "tasks": list(self.tasks)}


def parse_specs(specs: list[str]) -> list[tuple[str, str]]:
    """``NAME=RUN_OR_CHECKPOINT`` items -> (name, path); a bare path is named after its folder."""
    if not specs:
        raise FreezetuneError("serve needs at least one --checkpoint NAME=RUN_OR_CHECKPOINT")
    out: list[tuple[str, str]] = []
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep:
            name, path = Path(spec.rstrip("/")).name, spec
        if not NAME.match(name):
            raise FreezetuneError(f"--checkpoint {spec}: the name {name!r} must be letters, digits, '.', '_', "
                                  "'-' or ':' (NAME=RUN_OR_CHECKPOINT)")
        if any(name == known for known, _ in out):
            raise FreezetuneError(f"--checkpoint {spec}: the name {name!r} is given twice; name each checkpoint "
                                  "once (NAME=RUN_OR_CHECKPOINT)")
        out.append((name, path))
    return out


def load_bases(specs: list[str]) -> list[Base]:
    """Every checkpoint loaded onto its base, each base once. Cheap checks run for all before any weights load."""
    described = []
    for name, path in parse_specs(specs):
        try:
            folder, meta = read_meta(path)
        except FreezetuneError as error:
            raise FreezetuneError(f"checkpoint {name}: {error}") from None
        gguf = meta.get("gguf_file")
        try:
            check_model_folder(meta["base_model"], gguf)
        except FreezetuneError as error:
            raise FreezetuneError(f"checkpoint {name}: its base model cannot be found ({error})") from None
        described.append((name, folder, meta))
    from transformers.utils import logging as hf_logging

    # transformers draws a "Loading weights" bar per model on stderr: a server logs lines, and a refusal
    # must stay the one line it is.
    hf_logging.disable_progress_bar()
    bases: dict[tuple, Base] = {}
    with held_logs(logging.getLogger("freezetune")):  # a refusal is the only line; the notes come once all loaded
        for name, folder, meta in described:
            key = (meta["base_model"], meta.get("gguf_file"), meta.get("task", CLASSIFICATION))
            if key not in bases:
                bases[key] = _load_base(meta)
            base = bases[key]
            base.tasks[name] = _load_task(name, folder, meta, base)
            log.info("loaded %s onto %s: shares blocks 0..%d, adds %.1f MiB", name, base.path,
                     base.tasks[name].depth - 1, base.tasks[name].own_bytes / 2**20)
    return list(bases.values())


def _load_base(meta: dict) -> Base:
    path, gguf, remote = meta["base_model"], meta.get("gguf_file"), trusts_remote_code(meta)
    if meta.get("task", CLASSIFICATION) == CAUSAL_LM:
        model = load_causal_lm(path, gguf_file=gguf, trust_remote_code=remote)
    else:  # cls pooling keeps the pooler, which cls-pooled tasks need; the others drop it in their copies
        model = load_classifier(path, 1, pooling="cls", gguf_file=gguf, trust_remote_code=remote)
    for param in model.parameters():
        param.requires_grad_(False)
    model.eval()
    tokenizer = load_tokenizer(path, gguf_file=gguf, trust_remote_code=remote)
    size = sum(p.numel() * p.element_size() for p in model.backbone.parameters())
    fingerprint = base_fingerprint(model.backbone)
    names = tuple(n for n, _ in model.backbone.named_parameters())
    return Base(path, meta.get("task", CLASSIFICATION), model, LayerMap.from_model(model), tokenizer, fingerprint,
                bytes=size, fingerprints={names: fingerprint})


def _task_model(meta: dict, base: Base) -> nn.Module:
    if base.kind == CAUSAL_LM:
        return shared_copy(base.model)
    backbone = shared_copy(base.model.backbone)
    return SequenceClassifier(backbone, len(meta["label_names"]), meta["pooling"])  # drops the pooler unless cls


def _load_task(name: str, folder: Path, meta: dict, base: Base) -> ServedTask:
    model = _task_model(meta, base)
    # A mean-pooled copy has no pooler, so its fingerprint differs from the base's with one: hash the copy.
    names = tuple(n for n, _ in model.backbone.named_parameters())
    if names not in base.fingerprints:
        base.fingerprints[names] = base_fingerprint(model.backbone)
    check_base_fingerprint(meta, base.fingerprints[names], checkpoint=f"{name} ({folder})", base=str(base.path),
                           remedy="serve it with the base it was trained from")
    plan = Plan.from_dict(meta["plan"])
    layers = LayerMap.from_model(model)
    if plan.lora is not None:
        model, layers = add_lora(model, plan.lora, layers)
    tensors = read_tensors(folder, meta)
    try:
        put_tensors(model, {n: tensors[n] for n in meta["tensors"]})
    except FreezetuneError as error:
        raise FreezetuneError(f"checkpoint {name} ({folder}) does not fit base {base.path}: {error}") from None
    for param in model.parameters():
        param.requires_grad_(False)
    model.eval()
    depth = _shared_depth(layers, meta["tensors"])
    config = meta.get("config") or {}
    fmt = PromptFormat.choose(base.tokenizer, config.get("chat_template", "auto")) if base.kind == CAUSAL_LM else None
    return ServedTask(name, folder, meta, model, layers, depth, own_bytes(model, base.model),
                      int(config.get("max_length") or DEFAULT_MAX_LENGTH), _run_metrics(folder), fmt)


def _shared_depth(layers: LayerMap, trained: list[str]) -> int:
    """How many blocks the task shares with its base: those below the shallowest one it trained
    (adapters count as trained); none when it trained the embeddings."""
    units = {layers.unit_for(name) for name in trained}
    if EMBEDDINGS in units:
        return 0
    blocks = [int(u.split(".")[1]) for u in units if u.startswith("block.")]
    return min(blocks) if blocks else layers.num_blocks


def _run_metrics(folder: Path) -> dict | None:
    """The summary of the run the checkpoint came from, when it sits in its run folder."""
    run = folder.parent
    path = run / "metrics.json"
    if not (is_run(run) and path.is_file()):
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data.get("summary", data) if isinstance(data, dict) else None
