"""Compact checkpoints: only the trained tensors, plus what it takes to rebuild the rest.

A checkpoint folder holds ``trained.safetensors`` (the tensors that trained: head, trained
blocks, LoRA adapters) and ``checkpoint.json`` (plan, labels, pooling, base model path and a
fingerprint of the base weights, the resolved run config, sizes). Loading rebuilds the model
from the base, refuses a base whose weights differ from the one trained on, re-creates the
LoRA adapters and loads the trained tensors strictly.

Exports: ``export_hf`` writes a plain Hugging Face folder (BERT with CLS pooling as the native
``BertForSequenceClassification``; anything else with a small ``modeling_freezetune.py`` loaded
through ``trust_remote_code=True``); ``export_peft`` writes a PEFT LoRA adapter.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn

from freezetune.core.errors import FreezetuneError
from freezetune.core.plan import Plan

FORMAT = "freezetune-checkpoint"
FORMAT_VERSION = 1
META_FILE = "checkpoint.json"
TENSORS_FILE = "trained.safetensors"
CHECKPOINT_DIR = "checkpoint"  # the checkpoint's folder inside a run folder
MODELING_FILE = "modeling_freezetune.py"
_NATIVE_CLS = {"bert": "BertForSequenceClassification"}  # model_type -> class equal to cls pooling


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
    from freezetune.io.rundir import is_run

    if is_run(path):
        raise FreezetuneError(f"run folder {path} holds no checkpoint ({CHECKPOINT_DIR}/{META_FILE} is missing)")
    raise FreezetuneError(f"{path} is not a freezetune checkpoint: it has no {META_FILE}")


def _check_new_folder(target: Path, flag: str) -> None:
    """Refuse a file, a non-empty folder, or a folder that could never be made."""
    if target.exists():
        if not target.is_dir():
            raise FreezetuneError(f"{target} is a file; choose a new folder for {flag}")
        if any(target.iterdir()):
            raise FreezetuneError(
                f"{target} is not empty; choose a new or empty folder for {flag} (nothing is overwritten)"
            )
        return
    ancestor = target.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        raise FreezetuneError(f"cannot create {target}: {ancestor} is not a writable folder; choose another {flag}")


class _Staging:
    """Write a folder next to its target, then move it into place in one rename."""

    def __init__(self, target: Path, *, replace_checkpoint: bool = False):
        self.target = target
        self.replace_checkpoint = replace_checkpoint

    def __enter__(self) -> Path:
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(dir=self.target.parent, prefix=f".{self.target.name}.tmp-"))
        return self.path

    def __exit__(self, kind, value, traceback) -> None:
        if kind is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            return
        old = None
        if self.target.exists():
            if self.replace_checkpoint and (self.target / META_FILE).is_file():
                old = self.target.with_name(f".{self.target.name}.old-{os.getpid()}-{time.monotonic_ns()}")
                os.rename(self.target, old)
            else:
                self.target.rmdir()  # checked empty before anything was written
        os.rename(self.path, self.target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


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
    label_names: list[str],
    config: dict,
    trained_names: Iterable[str] | None = None,
) -> dict:
    """Write ``trained.safetensors`` + ``checkpoint.json`` into ``folder``; return the JSON dict.

    Saved: every parameter with ``requires_grad`` now, every LoRA adapter tensor, and the
    ``trained_names`` given (a schedule passes the union of what trained in any phase).
    ``folder`` is written atomically; an existing checkpoint there is replaced, any other
    non-empty folder is refused.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    if folder.exists() and not (folder / META_FILE).is_file():
        _check_new_folder(folder, "the checkpoint")
    params = dict(model.named_parameters())
    names = {n for n, p in params.items() if p.requires_grad or "lora_" in n}
    names.update(trained_names or ())
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
        "freezetune_version": _version(),
        "plan": plan.to_dict(),
        "label_names": list(label_names),
        "num_labels": len(label_names),
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
    with _Staging(folder, replace_checkpoint=True) as staging:
        save_file(tensors, str(staging / TENSORS_FILE), metadata={"format": "pt", "freezetune": str(FORMAT_VERSION)})
        _fsync(staging / TENSORS_FILE)
        meta["checkpoint_bytes"] = (staging / TENSORS_FILE).stat().st_size
        (staging / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        _fsync(staging / META_FILE)
    return meta


def _version() -> str:
    from freezetune import __version__

    return __version__


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


def _read_tensors(folder: Path, meta: dict) -> dict[str, torch.Tensor]:
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


def load_checkpoint(
    folder: str | os.PathLike[str], *, base_path: str | None = None
) -> tuple[nn.Module, Any, dict]:
    """(model in eval mode on the CPU, tokenizer, checkpoint JSON) from a checkpoint or run folder.

    ``base_path`` replaces the base model path recorded at training time (a moved folder);
    its weights must still have the recorded fingerprint.
    """
    from freezetune.core.layout import LayerMap
    from freezetune.core.model import load_classifier, load_tokenizer

    folder, meta = read_meta(folder)
    tensors = _read_tensors(folder, meta)
    base = base_path or meta["base_model"]
    gguf_file = meta.get("gguf_file")
    model = load_classifier(base, len(meta["label_names"]), pooling=meta["pooling"], gguf_file=gguf_file)
    found = base_fingerprint(model.backbone)
    if found != meta["base_fingerprint"]:
        raise FreezetuneError(
            f"checkpoint {folder} was trained on a different base model (fingerprint "
            f"{meta['base_fingerprint']} != {found} of {base}); pass the base it was trained from with --model"
        )
    plan = Plan.from_dict(meta["plan"])
    layers = LayerMap.from_model(model)
    if plan.lora is not None:
        from freezetune.core.lora import add_lora

        model, layers = add_lora(model, plan.lora, layers)
    params = dict(model.named_parameters())
    tensors = {name: tensors[name] for name in meta["tensors"]}  # the model's order
    for name, value in tensors.items():
        if name not in params:
            raise FreezetuneError(
                f"checkpoint {folder} does not fit base {base}: the model has no tensor {name}"
            )
        if tuple(params[name].shape) != tuple(value.shape):
            raise FreezetuneError(
                f"checkpoint {folder} does not fit base {base}: {name} has shape {tuple(value.shape)} "
                f"in the checkpoint but {tuple(params[name].shape)} in the model"
            )
    with torch.no_grad():
        for name, value in tensors.items():
            params[name].copy_(value)
    plan.apply(model, layers)
    model.eval()
    tokenizer = load_tokenizer(base, gguf_file=gguf_file)
    return model, tokenizer, meta


# ---------------------------------------------------------------------- export: Hugging Face
MODELING_SOURCE = '''"""Written by freezetune export: backbone -> pooling (cls | mean | last) -> dropout -> linear.

Load with AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True).
"""

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedConfig, PreTrainedModel
from transformers.configuration_utils import SubConfigSpec
from transformers.modeling_outputs import SequenceClassifierOutput


class FreezetuneConfig(PreTrainedConfig):
    model_type = "freezetune_classifier"
    sub_configs_defaults = {"inner_config": SubConfigSpec(config_class=AutoConfig, model_type="bert")}
    inner_config: dict | PreTrainedConfig | None = None
    pooling: str = "mean"
    classifier_dropout: float = 0.1


class FreezetuneForSequenceClassification(PreTrainedModel):
    config_class = FreezetuneConfig
    base_model_prefix = "backbone"
    _supports_sdpa = True

    def __init__(self, config):
        super().__init__(config)
        self.backbone = AutoModel.from_config(config.inner_config)
        if config.pooling != "cls" and getattr(self.backbone, "pooler", None) is not None:
            self.backbone.pooler = None  # freezetune drops the unused pooler
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(config.inner_config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        outputs = self.backbone(**inputs)
        hidden = outputs.last_hidden_state
        if self.config.pooling == "mean":
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        elif self.config.pooling == "last":  # the last real token; right padding
            last = (attention_mask.long().sum(1) - 1).clamp(min=0)
            pooled = hidden[torch.arange(hidden.size(0), device=hidden.device), last]
        else:
            pooled = getattr(outputs, "pooler_output", None)
            if pooled is None:
                pooled = hidden[:, 0]
        logits = self.classifier(self.dropout(pooled))
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits.view(-1, logits.size(-1)), labels.view(-1))
        return SequenceClassifierOutput(loss=loss, logits=logits)
'''


def _import_modeling(path: Path):
    name = f"_freezetune_export_{abs(hash(str(path)))}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclass and type-hint machinery look the module up by name
    spec.loader.exec_module(module)
    return module


def _labels(meta: dict) -> tuple[dict[int, str], dict[str, int]]:
    names = meta["label_names"]
    return dict(enumerate(names)), {name: i for i, name in enumerate(names)}


def is_native(model: nn.Module) -> bool:
    """True when a stock transformers class computes exactly what this classifier does."""
    backbone = model.backbone
    model_type = getattr(backbone.config, "model_type", None)
    return (
        model.pooling == "cls"
        and model_type in _NATIVE_CLS
        and type(backbone).__name__ == "BertModel"
        and getattr(backbone, "pooler", None) is not None
    )


def _native_model(model: nn.Module, meta: dict) -> nn.Module:
    import transformers

    config = copy.deepcopy(model.backbone.config)
    config.id2label, config.label2id = _labels(meta)
    config.classifier_dropout = model.dropout.p
    config.problem_type = "single_label_classification"
    cls = getattr(transformers, _NATIVE_CLS[config.model_type])
    native = cls(config)
    prefix = native.base_model_prefix
    state = {
        (f"{prefix}.{k[len('backbone.'):]}" if k.startswith("backbone.") else k): v
        for k, v in model.state_dict().items()
    }
    native.load_state_dict(state, strict=True)
    return native


def _custom_model(model: nn.Module, meta: dict, staging: Path) -> nn.Module:
    (staging / MODELING_FILE).write_text(MODELING_SOURCE, encoding="utf-8")
    module = _import_modeling(staging / MODELING_FILE)
    id2label, label2id = _labels(meta)
    config = module.FreezetuneConfig(
        inner_config=copy.deepcopy(model.backbone.config),
        pooling=model.pooling,
        classifier_dropout=model.dropout.p,
        id2label=id2label,
        label2id=label2id,
        problem_type="single_label_classification",
        auto_map={
            "AutoConfig": "modeling_freezetune.FreezetuneConfig",
            "AutoModelForSequenceClassification": "modeling_freezetune.FreezetuneForSequenceClassification",
        },
    )
    exported = module.FreezetuneForSequenceClassification(config)
    exported.load_state_dict(model.state_dict(), strict=True)  # same names: backbone.*, classifier.*
    return exported


def export_hf(
    checkpoint_folder: str | os.PathLike[str], to_folder: str | os.PathLike[str], *, base_path: str | None = None
) -> Path:
    """Write a Hugging Face model folder (config.json, model.safetensors, tokenizer) to ``to_folder``.

    LoRA is merged into the weights. The folder loads with
    ``AutoModelForSequenceClassification.from_pretrained`` (with ``trust_remote_code=True``
    unless the export is native: see ``freezetune.json`` -> ``trust_remote_code``).
    """
    from freezetune.core.lora import merge_lora

    to = Path(to_folder)
    _check_new_folder(to, "--to")
    model, tokenizer, meta = load_checkpoint(checkpoint_folder, base_path=base_path)
    if any("lora_" in n for n, _ in model.named_parameters()):
        merge_lora(model)  # our own freshly loaded copy
    model.eval()
    native = is_native(model)
    with _Staging(to) as staging:
        exported = _native_model(model, meta) if native else _custom_model(model, meta, staging)
        exported.eval()
        exported.save_pretrained(str(staging))
        tokenizer.save_pretrained(str(staging))
        info = {
            "exported_from": str(resolve_checkpoint(checkpoint_folder).resolve()),
            "base_model": meta["base_model"],
            "base_fingerprint": meta["base_fingerprint"],
            "plan": meta["plan"].get("spec"),
            "pooling": meta["pooling"],
            "label_names": meta["label_names"],
            "trust_remote_code": not native,
        }
        (staging / "freezetune.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return to


# ---------------------------------------------------------------------- export: PEFT
def export_peft(
    checkpoint_folder: str | os.PathLike[str], to_folder: str | os.PathLike[str], *, base_path: str | None = None
) -> Path:
    """Write the LoRA adapter (adapter_model.safetensors + adapter_config.json) for PEFT.

    The adapter applies to the backbone. What else trained (the classifier head, any fully
    trained units) goes to ``extra_trained.safetensors`` under freezetune's names, with the
    labels and pooling in ``freezetune.json``.
    """
    from safetensors.torch import save_file

    from freezetune.core.lora import save_peft_adapter

    folder, meta = read_meta(checkpoint_folder)
    plan = Plan.from_dict(meta["plan"])
    if plan.lora is None:
        raise FreezetuneError(
            f"checkpoint {folder} was trained without LoRA ({plan.spec}), so it has no adapter; "
            "use --format hf"
        )
    to = Path(to_folder)
    _check_new_folder(to, "--to")
    model, _, meta = load_checkpoint(folder, base_path=base_path)
    with _Staging(to) as staging:
        save_peft_adapter(model, plan.lora, staging, base_model_name_or_path=meta["base_model"])
        params = dict(model.named_parameters())
        extra = {n: params[n].detach().contiguous() for n in meta["tensors"] if "lora_" not in n}
        if extra:
            save_file(extra, str(staging / "extra_trained.safetensors"), metadata={"format": "pt"})
        info = {
            "base_model": meta["base_model"],
            "base_fingerprint": meta["base_fingerprint"],
            "plan": meta["plan"].get("spec"),
            "pooling": meta["pooling"],
            "label_names": meta["label_names"],
            "extra_trained": sorted(extra),
        }
        (staging / "freezetune.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return to


# ---------------------------------------------------------------------- CLI glue
def add_export_parser(subparsers) -> Any:
    parser = subparsers.add_parser(
        "export",
        help="export a checkpoint as a Hugging Face model folder or a PEFT adapter",
        description=(
            "Rebuild the model from its base and the compact checkpoint, then write it as a plain "
            "Hugging Face folder (LoRA merged) or as a PEFT LoRA adapter."
        ),
    )
    parser.add_argument("--checkpoint", required=True, metavar="RUN_OR_CKPT",
                        help="checkpoint folder, or a run folder holding checkpoint/")
    parser.add_argument("--to", required=True, metavar="FOLDER",
                        help="new or empty folder to write (an existing non-empty folder is refused)")
    parser.add_argument("--format", default="hf", choices=("hf", "peft"),
                        help="hf: config.json + model.safetensors + tokenizer for "
                             "AutoModelForSequenceClassification; peft: the LoRA adapter only "
                             "(LoRA checkpoints) (default: hf)")
    parser.add_argument("--model", default=None, metavar="PATH",
                        help="base model folder, when it moved since training (default: the path "
                             "recorded in the checkpoint; its weights must match the checkpoint's fingerprint)")
    parser.set_defaults(run=cmd_export)
    return parser


def cmd_export(args) -> int:
    if args.format == "peft":
        to = export_peft(args.checkpoint, args.to, base_path=args.model)
        print(f"wrote PEFT adapter to {to}; load it with PeftModel.from_pretrained(base_model, {str(to)!r})")
        return 0
    to = export_hf(args.checkpoint, args.to, base_path=args.model)
    remote = json.loads((to / "freezetune.json").read_text())["trust_remote_code"]
    how = f"AutoModelForSequenceClassification.from_pretrained({str(to)!r}{', trust_remote_code=True' if remote else ''})"
    print(f"wrote Hugging Face model to {to}; load it with {how}")
    return 0


__all__ = [
    "base_fingerprint",
    "save_checkpoint",
    "load_checkpoint",
    "read_meta",
    "resolve_checkpoint",
    "export_hf",
    "export_peft",
    "add_export_parser",
]
