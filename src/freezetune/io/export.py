"""Exports of a compact checkpoint, for use without freezetune: judged by the standard loaders.

``export_hf`` writes a plain Hugging Face folder with any LoRA merged. A classifier is the
native ``BertForSequenceClassification`` when that class computes exactly what it does (BERT,
CLS pooling through the pooler); anything else gets a small ``modeling_freezetune.py`` loaded
with ``trust_remote_code=True``. A causal LM is its own ``...ForCausalLM`` (tied embeddings stay
tied). ``export_peft`` writes a PEFT LoRA adapter that ``PeftModel.from_pretrained`` /
``AutoPeftModelFor...`` load onto the base (export_peft.py says how it is built). Every folder
holds a model card (README.md, model_card.py) and ``freezetune.json``, and is written atomically.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import sys
from pathlib import Path

import torch
from torch import nn

from freezetune.core.atomic import atomic_write_text
from freezetune.core.config import CAUSAL_LM, CLASSIFICATION
from freezetune.core.errors import FreezetuneError
from freezetune.core.layout import LayerMap
from freezetune.core.lora import merge_lora
from freezetune.core.model import load_classifier
from freezetune.core.plan import Plan
from freezetune.io.checkpoint import load_checkpoint, read_meta, trusts_remote_code
from freezetune.io.export_peft import build_peft_model, check_same_outputs
from freezetune.io.model_card import load_code, model_card, run_metrics, trained_summary
from freezetune.io.staging import Staging, check_new_folder

MODELING_FILE = "modeling_freezetune.py"
INFO_FILE = "freezetune.json"
BASE_DIR = "base"  # a PEFT export's own base model, when no stock class pools like ours
_NATIVE_CLS = {"bert": "BertForSequenceClassification"}  # model_type -> class equal to cls pooling


# ---------------------------------------------------------------------- the classifier's classes
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


def _custom_model(model: nn.Module, meta: dict, folder: Path) -> nn.Module:
    """Our classifier as ``FreezetuneForSequenceClassification``; its code is written to ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / MODELING_FILE, MODELING_SOURCE)
    module = _import_modeling(folder / MODELING_FILE)
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


# ---------------------------------------------------------------------- shared
def _loaded(checkpoint_folder, to_folder, base_path: str | None):
    """(checkpoint folder, target, model, tokenizer, meta, trained-units text), the target checked first."""
    folder, _ = read_meta(checkpoint_folder)
    to = Path(to_folder)
    check_new_folder(to, "--to")
    model, tokenizer, meta = load_checkpoint(folder, base_path=base_path)
    if meta.get("task") == CAUSAL_LM:
        tokenizer.padding_side = "left"  # saved with the export: batched generation needs it
    layers = LayerMap.from_model(model)
    lora_targets = sorted(n for n, m in model.named_modules() if hasattr(m, "lora_A"))
    trained = trained_summary(meta, layers.unit_for, lora_targets)
    return folder, to, model, tokenizer, meta, trained


def _base_name(meta: dict, base_path: str | None) -> str:
    """Where users load the base from: the --model given now, else the path recorded at training."""
    if base_path is None:
        return meta["base_model"]
    local = Path(base_path).expanduser()
    return str(local.resolve()) if local.exists() else base_path


def _finish(staging: Path, to: Path, folder: Path, meta: dict, info: dict, trained: str) -> None:
    """freezetune.json (with the loading line) and the model card, beside what was exported."""
    info = {
        **info,
        "exported_from": str(folder.resolve()),
        "base_model": meta["base_model"],
        "base_fingerprint": meta["base_fingerprint"],
        "gguf_file": meta.get("gguf_file"),
        "plan": meta["plan"].get("spec"),
        "pooling": meta["pooling"],
        "label_names": meta["label_names"],
    }
    info["load"] = load_code(info, str(to))[1]
    atomic_write_text(staging / INFO_FILE, json.dumps(info, indent=2) + "\n")
    card = model_card(info, meta, folder=str(to), trained=trained, metrics=run_metrics(folder))
    atomic_write_text(staging / "README.md", card)  # replaces PEFT's placeholder card


# ---------------------------------------------------------------------- export: Hugging Face
def export_hf(
    checkpoint_folder: str | os.PathLike[str], to_folder: str | os.PathLike[str], *, base_path: str | None = None
) -> Path:
    """Write a Hugging Face model folder (config.json, model.safetensors, tokenizer, README.md) to ``to_folder``.

    LoRA is merged into the weights. A classifier loads with
    ``AutoModelForSequenceClassification.from_pretrained`` (with ``trust_remote_code=True``
    unless the export is native: see ``freezetune.json`` -> ``trust_remote_code``); a causal LM
    with ``AutoModelForCausalLM.from_pretrained``.
    """
    folder, to, model, tokenizer, meta, trained = _loaded(checkpoint_folder, to_folder, base_path)
    task = meta.get("task", CLASSIFICATION)
    if any("lora_" in n for n, _ in model.named_parameters()):
        merge_lora(model)  # our own freshly loaded copy
    model.eval()
    with Staging(to) as staging:
        if task == CAUSAL_LM:
            # The whole ...ForCausalLM is the model: merged, it is a plain checkpoint of its own class,
            # and a trained tied embedding is still the one tensor behind both ends.
            exported, remote = model.backbone, False
        else:
            remote = not is_native(model)
            exported = _custom_model(model, meta, staging) if remote else _native_model(model, meta)
        exported.eval()
        exported.save_pretrained(str(staging))
        tokenizer.save_pretrained(str(staging))
        _finish(staging, to, folder, meta, {"format": "hf", "task": task, "trust_remote_code": remote}, trained)
    return to


# ---------------------------------------------------------------------- export: PEFT
def _peft_base(model: nn.Module, meta: dict, base: str, staging: Path):
    """(untrained base in the class users load, rename ours -> its names, task type, always-saved modules, info)."""
    task = meta.get("task", CLASSIFICATION)
    if task == CAUSAL_LM:
        from transformers import AutoModelForCausalLM

        gguf = {"gguf_file": meta["gguf_file"]} if meta.get("gguf_file") else {}
        lm = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32, trust_remote_code=trusts_remote_code(meta),
                                                  **gguf)
        info = {"trust_remote_code": False, "peft_base": base, "base_in_folder": False}
        return lm, (lambda n: n.removeprefix("backbone.")), "CAUSAL_LM", (), info
    # A classifier's head is always saved: PEFT's SEQ_CLS adds ``classifier`` to modules_to_save and
    # expects it in the adapter, and even an untrained head holds weights the base does not have.
    if is_native(model):
        from transformers import AutoModelForSequenceClassification

        id2label = dict(enumerate(meta["label_names"]))
        native = AutoModelForSequenceClassification.from_pretrained(base, id2label=id2label, dtype=torch.float32,
                                                                    trust_remote_code=trusts_remote_code(meta))
        prefix = native.base_model_prefix  # e.g. bert: the names PEFT expects under this class

        def rename(name: str) -> str:
            return prefix + name.removeprefix("backbone") if name.startswith("backbone.") else name

        info = {"trust_remote_code": False, "peft_base": base, "base_in_folder": False}
        return native, rename, "SEQ_CLS", ("classifier",), info
    # No stock class pools like this model: base/ holds the base with freezetune's pooling code
    # and a fresh head, and the adapter applies to it.
    plain = load_classifier(base, len(meta["label_names"]), pooling=meta["pooling"], gguf_file=meta.get("gguf_file"),
                            trust_remote_code=trusts_remote_code(meta))
    custom = _custom_model(plain, meta, staging / BASE_DIR).eval()
    custom.save_pretrained(str(staging / BASE_DIR))
    info = {"trust_remote_code": True, "peft_base": BASE_DIR, "base_in_folder": True}
    return custom, (lambda n: n), "SEQ_CLS", ("classifier",), info


def export_peft(
    checkpoint_folder: str | os.PathLike[str], to_folder: str | os.PathLike[str], *, base_path: str | None = None
) -> Path:
    """Write a PEFT LoRA adapter (adapter_model.safetensors + adapter_config.json) to ``to_folder``.

    ``task_type`` is ``SEQ_CLS`` or ``CAUSAL_LM``; module names are those of the class loaded
    from the base; the head and every other trained module travel in ``modules_to_save``. A
    classifier that no stock class reproduces (mean or last pooling) gets ``base/``: the base
    with freezetune's pooling code, loaded with ``trust_remote_code=True``. The export is
    checked to reproduce the checkpoint's outputs before anything is written.
    """
    folder, meta = read_meta(checkpoint_folder)
    plan = Plan.from_dict(meta["plan"])
    if plan.lora is None:
        raise FreezetuneError(
            f"checkpoint {folder} was trained without LoRA ({plan.spec}), so it has no adapter; "
            "use --format hf"
        )
    folder, to, model, tokenizer, meta, trained = _loaded(folder, to_folder, base_path)
    task = meta.get("task", CLASSIFICATION)
    base = _base_name(meta, base_path)
    with Staging(to) as staging:
        native, rename, task_type, always, info = _peft_base(model, meta, base, staging)
        where = str((to / BASE_DIR).resolve()) if info["base_in_folder"] else base
        if info["base_in_folder"]:
            tokenizer.save_pretrained(str(staging / BASE_DIR))
        peft_model = build_peft_model(
            model, plan.lora, native, rename=rename, trained=meta["tensors"], task_type=task_type,
            always=always, base_model_name_or_path=where,
        )
        check_same_outputs(model, peft_model, vocab_size=model.config.vocab_size, causal=task == CAUSAL_LM)
        # Embeddings travel as modules_to_save when they trained; freezetune never resizes them, so
        # PEFT's own embedding check (which reads the base's config.json) has nothing to add.
        peft_model.save_pretrained(str(staging), save_embedding_layers=False)
        tokenizer.save_pretrained(str(staging))
        _finish(staging, to, folder, meta, {"format": "peft", "task": task, **info}, trained)
    return to


__all__ = ["export_hf", "export_peft", "is_native"]
