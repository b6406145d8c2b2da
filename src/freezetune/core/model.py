"""A sequence classifier over any Hugging Face backbone, with the right pooling.

``BertForSequenceClassification`` always pools through the CLS pooler. Sentence-transformers
models such as all-MiniLM-L6-v2 were trained mean-pooled and their CLS pooler never was:
a mean-pooled probe beats the CLS probe by 4-7 points on SST-2. So pooling is a choice here,
``cls`` | ``mean`` | ``last``, and its default is read from the model folder.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from torch import nn

from freezetune.core.errors import FreezetuneError

log = logging.getLogger("freezetune")

POOLINGS = ("cls", "mean", "last")


class SequenceClassifier(nn.Module):
    """backbone -> pooling -> dropout -> linear. The head unit is the pooler (cls) + classifier."""

    def __init__(self, backbone: nn.Module, num_labels: int, pooling: str, dropout: float = 0.1):
        super().__init__()
        if pooling not in POOLINGS:
            raise FreezetuneError(f"unknown pooling {pooling!r}; choose from {', '.join(POOLINGS)}")
        if pooling != "cls" and getattr(backbone, "pooler", None) is not None:
            # An unused pooler would count as trainable head parameters that never learn.
            backbone.pooler = None
        self.backbone = backbone
        self.pooling = pooling
        self.config = backbone.config
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(backbone.config.hidden_size, num_labels)
        nn.init.normal_(self.classifier.weight, std=getattr(self.config, "initializer_range", 0.02))
        nn.init.zeros_(self.classifier.bias)

    def pool(self, outputs, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = outputs.last_hidden_state
        if self.pooling == "cls":
            pooled = getattr(outputs, "pooler_output", None)
            return pooled if pooled is not None else hidden[:, 0]
        return pool_hidden(hidden, attention_mask, self.pooling)

    def forward(self, input_ids, attention_mask, token_type_ids=None, **_) -> torch.Tensor:
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        outputs = self.backbone(**inputs)
        return self.classifier(self.dropout(self.pool(outputs, attention_mask)))


def pool_hidden(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Mean over real tokens, or the last real token (right padding), or position 0."""
    if pooling == "mean":
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    if pooling == "last":
        last = attention_mask.long().sum(1) - 1
        return hidden[torch.arange(hidden.size(0), device=hidden.device), last.clamp(min=0)]
    return hidden[:, 0]


def default_pooling(model_path: str | Path | None, config) -> str:
    """The model's own pooling: sentence-transformers' 1_Pooling config, else by architecture:
    ``last`` for decoders (:func:`is_decoder`), whose only position that has seen the whole
    text is the last one, and ``cls`` for encoders."""
    if model_path is not None:
        pooling_config = Path(model_path) / "1_Pooling" / "config.json"
        if pooling_config.is_file():
            settings = json.loads(pooling_config.read_text())
            if settings.get("pooling_mode_mean_tokens"):
                return "mean"
            if settings.get("pooling_mode_cls_token"):
                return "cls"
            if settings.get("pooling_mode_lasttoken"):
                return "last"
    if is_decoder(config):
        return "last"
    return "cls"


# Model types with a causal-LM class that are nonetheless encoders as AutoModel loads them:
# their decoder class only works with is_decoder=True (BertGenerationDecoder).
_ENCODERS_WITH_CAUSAL_HEAD = frozenset({"bert-generation"})


def is_decoder(config) -> bool:
    """A decoder-only (causal) model: its hidden states at position t have seen tokens 0..t only.

    ``config.is_decoder`` set says so outright (a BERT configured as a decoder). Otherwise the
    ``model_type`` decides, because neither ``architectures`` (absent from a GGUF file's config)
    nor ``is_decoder`` (False or missing on Llama, Qwen2, GPT-2 configs) is reliable: a type
    transformers can load as a causal LM is a decoder, unless it is also a masked LM (BERT,
    RoBERTa, ELECTRA...: bidirectional encoders whose causal head needs is_decoder=True) or an
    encoder-decoder (BART, Marian...). A model_type transformers does not know (remote code)
    falls back to its architecture names.
    """
    if getattr(config, "is_decoder", False):
        return True
    if getattr(config, "is_encoder_decoder", False):
        return False
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
        MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES,
        MODEL_MAPPING_NAMES,
    )

    model_type = getattr(config, "model_type", None)
    if model_type in MODEL_MAPPING_NAMES or model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return (
            model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
            and model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES
            and model_type not in MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES
            and model_type not in _ENCODERS_WITH_CAUSAL_HEAD
        )
    archs = " ".join(getattr(config, "architectures", None) or [])
    return "CausalLM" in archs or "LMHeadModel" in archs


def _load_error(model_path, error: Exception) -> FreezetuneError:
    text = str(error).strip()
    if "trust_remote_code" in text:
        return remote_code_error(model_path)
    first_line = text.splitlines()[0] if text else type(error).__name__
    return FreezetuneError(f"cannot load model {model_path}: {first_line} (give a local model folder with --model)")


def remote_code_error(model_path) -> FreezetuneError:
    return FreezetuneError(f"{model_path} needs its own Python code to load (its config names custom classes): "
                           "if you trust its author, pass --trust-remote-code")


def _looks_local(name: str) -> bool:
    """A path rather than a Hub name (``org/model``): absolute, relative with ./ or ~, or nested deeper."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name


def check_model_folder(model_path: str | Path, gguf_file: str | None = None) -> None:
    """A clear error for a --model that is no model folder: missing, a file, without config.json or GGUF file."""
    path = Path(model_path).expanduser()
    if not path.exists():
        if _looks_local(str(model_path)):
            raise FreezetuneError(f"no such model folder: {model_path}; give a folder holding config.json and the "
                                  "weights to --model")
        return  # perhaps a Hub name: transformers says whether it can fetch it
    if not path.is_dir():
        hint = f" (a GGUF file: --model {path.parent} --gguf-file {path.name})" if path.suffix == ".gguf" else ""
        raise FreezetuneError(f"--model {model_path} is a file; give the model's folder{hint}")
    if gguf_file:
        if not (path / gguf_file).is_file():
            raise FreezetuneError(f"{model_path} has no GGUF file {gguf_file!r}: check --gguf-file")
    elif not (path / "config.json").is_file():
        raise FreezetuneError(f"{model_path} is not a model folder: it has no config.json; give the folder that "
                              "holds config.json and the weights to --model")


def load_config(model_path: str | Path, *, gguf_file: str | None = None, trust_remote_code: bool = False):
    """The model's config alone (config.json, or a GGUF file's header): no weights, so a bad --model fails fast."""
    from transformers import AutoConfig

    check_model_folder(model_path, gguf_file)
    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    try:
        return AutoConfig.from_pretrained(str(model_path), trust_remote_code=trust_remote_code, **kwargs)
    except (OSError, ValueError, KeyError) as error:
        raise _load_error(model_path, error) from None


def dequantized(model: nn.Module) -> nn.Module:
    """A GGUF file loads dequantized to float32, yet transformers keeps marking the model quantized, and
    then ``save_pretrained`` (an export) and ``Trainer`` refuse it. The weights are plain tensors: the marks go."""
    model.hf_quantizer, model.is_quantized = None, False
    if "quantization_config" in getattr(model.config, "__dict__", {}):
        del model.config.quantization_config
    return model


def load_tokenizer(model_path: str | Path, *, gguf_file: str | None = None, trust_remote_code: bool = False):
    """The model's tokenizer, right-padded, with a pad token (decoders ship none: EOS serves)."""
    from transformers import AutoTokenizer

    check_model_folder(model_path, gguf_file)
    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(model_path), trust_remote_code=trust_remote_code, **kwargs)
    except (OSError, ValueError) as error:
        raise _load_error(model_path, error) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


def load_classifier(
    model_path: str | Path,
    num_labels: int,
    *,
    pooling: str = "auto",
    gguf_file: str | None = None,
    dtype: torch.dtype = torch.float32,
    trust_remote_code: bool = False,
) -> SequenceClassifier:
    """Backbone from a local folder (or a Hub name when online) plus a fresh classifier head.

    Weights load in float32 (transformers 5 would otherwise keep the checkpoint's dtype);
    mixed precision is the trainer's business.
    """
    from transformers import AutoModel

    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    try:
        backbone = AutoModel.from_pretrained(str(model_path), dtype=dtype, trust_remote_code=trust_remote_code,
                                             **kwargs)
    except (OSError, ValueError) as error:
        raise _load_error(model_path, error) from None
    if gguf_file:
        dequantized(backbone)
    if pooling == "auto":
        pooling = default_pooling(model_path, backbone.config)
    dropout = getattr(backbone.config, "hidden_dropout_prob", None)
    dropout = 0.1 if dropout is None else dropout  # a backbone configured without dropout gets none here either
    model = SequenceClassifier(backbone, num_labels, pooling, dropout=dropout)
    log.info("loaded %s (%s, pooling=%s)", model_path, type(backbone).__name__, pooling)
    return model
