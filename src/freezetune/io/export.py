"""Exports of a compact checkpoint, for use without freezetune.

``export_hf`` writes a plain Hugging Face folder (BERT with CLS pooling as the native
``BertForSequenceClassification``; anything else with a small ``modeling_freezetune.py`` loaded
through ``trust_remote_code=True``); ``export_peft`` writes a PEFT LoRA adapter.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import sys
from pathlib import Path

from torch import nn

from freezetune.core.errors import FreezetuneError
from freezetune.core.lora import merge_lora, save_peft_adapter
from freezetune.core.plan import Plan
from freezetune.io.checkpoint import load_checkpoint, read_meta, resolve_checkpoint
from freezetune.io.staging import Staging, check_new_folder

MODELING_FILE = "modeling_freezetune.py"
_NATIVE_CLS = {"bert": "BertForSequenceClassification"}  # model_type -> class equal to cls pooling


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
    to = Path(to_folder)
    check_new_folder(to, "--to")
    model, tokenizer, meta = load_checkpoint(checkpoint_folder, base_path=base_path)
    if any("lora_" in n for n, _ in model.named_parameters()):
        merge_lora(model)  # our own freshly loaded copy
    model.eval()
    native = is_native(model)
    with Staging(to) as staging:
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


    folder, meta = read_meta(checkpoint_folder)
    plan = Plan.from_dict(meta["plan"])
    if plan.lora is None:
        raise FreezetuneError(
            f"checkpoint {folder} was trained without LoRA ({plan.spec}), so it has no adapter; "
            "use --format hf"
        )
    to = Path(to_folder)
    check_new_folder(to, "--to")
    model, _, meta = load_checkpoint(folder, base_path=base_path)
    with Staging(to) as staging:
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


__all__ = ["export_hf", "export_peft", "is_native"]
