"""Retention: how much of the pretrained skill survives fine-tuning.

Three measures, one per kind of model (DESIGN.md, "Retention"):

- ``sts``: encoders that are sentence embedders. STS-B dev Spearman of the cosine of
  pooled (mean by default) embeddings against the gold scores. Higher is better;
  all-MiniLM-L6-v2 untouched scores about 0.867.
- ``ppl``: causal LMs. Sliding-window perplexity on general English text, capped at
  ``max_tokens`` (2,048 by default). Lower is better. The text is ``--retention-data``
  when given, else WikiText-2 test from ../shared/data, else the CC0 text that ships with
  the package (references.py), so a decoder always has a perplexity reference.
- ``cka``: the generic fallback. Linear CKA between the base and the tuned model's pooled
  representations of the same reference texts. Before is 1.0 by definition; higher is better.

``measure(base, tuned, tokenizer)`` picks one (``reference="auto"``), scores both models
and returns a flat dict that names the data's source. ``base`` and ``tuned`` are backbones
(HF ``AutoModel``) or causal LMs; a :class:`~freezetune.core.model.SequenceClassifier` or a
:class:`~freezetune.core.causal_lm.CausalLM` is unwrapped to its ``.backbone``. The data each
measure runs on is found and read by references.py.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from freezetune.core.causal_lm import CausalLM
from freezetune.core.device import device_of, eval_mode
from freezetune.core.errors import FreezetuneError
from freezetune.core.model import POOLINGS, SequenceClassifier, pool_hidden
from freezetune.measure.references import (
    IN_MEMORY_SOURCE,
    Pairs,
    default_sts_path,
    load_reference_texts,
    load_sts_pairs,
    reference_text,
    spread,
    sts_source,
    texts_source,
)

REFERENCES = ("auto", "sts", "ppl", "cka")
# Perplexity's default token cap. It runs before training and again after every run, so it
# must stay cheap: 2,048 tokens cost SmolLM2-135M 33-41 CPU-seconds in float32 (measured on a
# busy 2-core machine: ~20 s wall on 2 idle cores); the cost grows linearly with the cap, and
# the whole WikiText-2 test set (~280k tokens) would cost over 100 times as much. Every default
# source covers the cap (the packaged text has 4,650 SmolLM2 tokens), so each scores the same
# number of tokens; --retention-limit changes it.
DEFAULT_MAX_TOKENS = 2_048


# --------------------------------------------------------------------------- models


def _unwrap(model: nn.Module) -> nn.Module:
    """A SequenceClassifier's or CausalLM's backbone; any other model as given."""
    # CausalLM's forward returns bare logits and wants a mask; its backbone is the HF model.
    return model.backbone if isinstance(model, (SequenceClassifier, CausalLM)) else model


def is_causal_lm(model: nn.Module) -> bool:
    """A model with a language-modelling head that predicts the next token."""
    name = type(_unwrap(model)).__name__
    return "CausalLM" in name or "LMHeadModel" in name


# --------------------------------------------------------------------------- STS


def embed(
    backbone: nn.Module,
    tokenizer,
    texts: Sequence[str],
    *,
    pooling: str = "mean",
    batch_size: int = 64,
    max_length: int = 128,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Pooled last-layer sentence embeddings, float32 on the CPU, one row per text, in order.

    Runs in eval mode without gradients and restores every module's train/eval flag after.
    Texts are batched by length (less padding), padded on the right by hand (so a tokenizer
    without a pad token works and ``last`` pooling finds the last real token).
    """
    if pooling not in POOLINGS:
        raise FreezetuneError(f"unknown pooling {pooling!r}; choose from {', '.join(POOLINGS)}")
    model = _unwrap(backbone)
    body = getattr(model, "base_model", model)  # a causal LM's body: no vocabulary-sized logits
    device = torch.device(device) if device is not None else device_of(model)
    texts = [str(t) for t in texts]
    if not texts:
        return torch.empty(0, getattr(model.config, "hidden_size", 0))
    encoded = tokenizer(texts, truncation=True, max_length=max_length, verbose=False)["input_ids"]
    order = sorted(range(len(texts)), key=lambda i: len(encoded[i]))
    out: list[torch.Tensor | None] = [None] * len(texts)
    with eval_mode(model), torch.no_grad():
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            longest = max(max(len(encoded[i]) for i in chunk), 1)
            ids = torch.zeros(len(chunk), longest, dtype=torch.long)
            mask = torch.zeros(len(chunk), longest, dtype=torch.long)
            for row, i in enumerate(chunk):
                ids[row, : len(encoded[i])] = torch.tensor(encoded[i], dtype=torch.long)
                mask[row, : len(encoded[i])] = 1
            ids, mask = ids.to(device), mask.to(device)
            outputs = body(input_ids=ids, attention_mask=mask)
            hidden = getattr(outputs, "last_hidden_state", None)
            if hidden is None:
                hidden = outputs[0]
            pooled = pool_hidden(hidden, mask, pooling).float().cpu()
            for row, i in enumerate(chunk):
                out[i] = pooled[row]
    return torch.stack(out)  # type: ignore[arg-type]


def sts_spearman(backbone: nn.Module, tokenizer, pairs: Pairs, **kw) -> float:
    """Spearman correlation of cos(embed(s1), embed(s2)) with the gold scores. ``kw`` go to :func:`embed`."""
    from scipy.stats import spearmanr

    first, second, scores = pairs
    if not (len(first) == len(second) == len(scores)) or len(scores) < 2:
        raise FreezetuneError("STS needs at least 2 pairs with one score each")
    vectors = embed(backbone, tokenizer, list(first) + list(second), **kw)
    cosine = F.cosine_similarity(vectors[: len(first)].double(), vectors[len(first) :].double(), dim=-1)
    rho = spearmanr(cosine.numpy(), scores).statistic
    return float(rho)


# --------------------------------------------------------------------------- perplexity


def _max_positions(model: nn.Module) -> int | None:
    config = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions", "max_seq_len"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _tokenize_prefix(tokenizer, text: str, max_tokens: int) -> list[int]:
    """Token ids of the text's start, at most ``max_tokens``; tokenizes only a prefix when it can."""
    chars = max_tokens * 8
    while True:
        piece = text if chars >= len(text) else text[: text.rfind(" ", 0, chars) + 1 or chars]
        ids = tokenizer(piece, verbose=False)["input_ids"]
        if len(ids) >= max_tokens or len(piece) >= len(text):
            return list(ids[:max_tokens])
        chars *= 4


def perplexity_with_count(
    causal_lm: nn.Module,
    tokenizer,
    text: str,
    *,
    max_tokens: int | None = DEFAULT_MAX_TOKENS,
    window: int = 512,
    stride: int | None = None,
) -> tuple[float, int]:
    """(perplexity, number of tokens scored); see :func:`perplexity`."""
    model = _unwrap(causal_lm)
    if not is_causal_lm(model):
        raise FreezetuneError(f"perplexity needs a causal LM; {type(model).__name__} has no next-token head")
    limit = _max_positions(model)
    window = min(window, limit) if limit else window
    stride = window - 1 if stride is None else stride
    if window < 2 or not 1 <= stride < window:
        raise FreezetuneError(f"need window >= 2 and 1 <= stride < window (window {window}, stride {stride})")
    if max_tokens is not None and max_tokens < 2:
        raise FreezetuneError(f"max_tokens must be at least 2, not {max_tokens}")
    if max_tokens:
        ids = _tokenize_prefix(tokenizer, text, max_tokens)
    else:
        ids = list(tokenizer(text, verbose=False)["input_ids"])
    if len(ids) < 2:
        raise FreezetuneError("the reference text is too short: need at least 2 tokens")
    tokens = torch.tensor(ids, dtype=torch.long)
    device = device_of(model)
    total, count, scored_to = 0.0, 0, 1  # the first token has no context: never scored
    with eval_mode(model), torch.no_grad():
        while scored_to < len(tokens):
            # `stride` new tokens, scored with the window of tokens that ends at them as context
            end = min(scored_to + stride, len(tokens))
            begin = max(0, end - window)
            logits = model(input_ids=tokens[begin:end].unsqueeze(0).to(device)).logits[0]
            # logits at position p predict the token at p + 1
            predict = logits[scored_to - begin - 1 : end - begin - 1].float()
            targets = tokens[scored_to:end].to(predict.device)
            total += F.cross_entropy(predict, targets, reduction="sum").item()
            count += end - scored_to
            scored_to = end
    return math.exp(total / count), count


def perplexity(
    causal_lm: nn.Module,
    tokenizer,
    text: str,
    *,
    max_tokens: int | None = DEFAULT_MAX_TOKENS,
    window: int = 512,
    stride: int | None = None,
) -> float:
    """Sliding-window perplexity of the text's first ``max_tokens`` tokens (None: all).

    Each forward pass scores ``stride`` new tokens with the ``window`` tokens that end at
    them as input (``window`` capped at the model's positions). The default stride,
    ``window - 1``, is the cheapest (nearly disjoint windows); a smaller stride gives each
    token more context at more cost. Every token but the first is scored exactly once.
    """
    return perplexity_with_count(causal_lm, tokenizer, text, max_tokens=max_tokens, window=window, stride=stride)[0]


# --------------------------------------------------------------------------- CKA


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA of two representations of the same n examples (rows), in feature space.

    ``||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)`` with column-centred Xc, Yc (Kornblith
    et al. 2019). Widths may differ; n < d is fine. In [0, 1]; 1 for identical representations,
    invariant to orthogonal transforms and isotropic scaling.
    """
    x = torch.as_tensor(x).detach().double().cpu().reshape(len(x), -1)
    y = torch.as_tensor(y).detach().double().cpu().reshape(len(y), -1)
    if len(x) != len(y) or len(x) < 2:
        raise FreezetuneError(f"CKA needs the same n >= 2 examples on both sides, got {len(x)} and {len(y)}")
    x = x - x.mean(0, keepdim=True)
    y = y - y.mean(0, keepdim=True)
    cross = (y.T @ x).pow(2).sum()
    norm = ((x.T @ x).pow(2).sum() * (y.T @ y).pow(2).sum()).sqrt()
    if norm == 0:
        raise FreezetuneError("CKA is undefined: a representation is constant across the reference texts")
    return float(cross / norm)


def representation_cka(
    base_backbone: nn.Module, tuned_backbone: nn.Module, tokenizer, texts: Sequence[str], pooling: str = "mean", **kw
) -> float:
    """Linear CKA between the two models' pooled representations of the same texts."""
    return linear_cka(
        embed(base_backbone, tokenizer, texts, pooling=pooling, **kw),
        embed(tuned_backbone, tokenizer, texts, pooling=pooling, **kw),
    )


# --------------------------------------------------------------------------- measure


def resolve_reference(model: nn.Module, reference: str = "auto", reference_data=None) -> str:
    """The measure ``auto`` picks: sts for encoders with pairs, ppl for causal LMs with text, else cka."""
    if reference not in REFERENCES:
        raise FreezetuneError(f"unknown retention reference {reference!r}; choose from {', '.join(REFERENCES)}")
    if reference != "auto":
        if reference == "ppl" and not is_causal_lm(model):
            raise FreezetuneError(
                f"retention reference ppl needs a causal LM; {type(_unwrap(model)).__name__} is not one "
                "(use sts or cka)"
            )
        return reference
    if isinstance(reference_data, (str, Path)) and not Path(reference_data).is_file():
        raise FreezetuneError(f"no such file: {reference_data} (--reference-data)")
    if is_causal_lm(model):
        return "ppl"  # always some text: the given data, WikiText-2, or the packaged text
    if reference_data is None:
        return "sts" if default_sts_path() else "cka"
    if isinstance(reference_data, tuple) and len(reference_data) == 3:
        return "sts"
    if isinstance(reference_data, (str, Path)):
        try:
            load_sts_pairs(reference_data, limit=2)
            return "sts"
        except FreezetuneError:
            return "cka"
    return "cka"


def measure(
    base: nn.Module,
    tuned: nn.Module | None,
    tokenizer,
    *,
    reference: str = "auto",
    reference_data=None,
    pooling: str = "mean",
    limit: int | None = None,
    before: float | None = None,
    batch_size: int = 64,
    max_length: int = 128,
) -> dict:
    """Retention of ``tuned`` relative to ``base`` on one reference measure.

    ``reference``: ``auto`` | ``sts`` | ``ppl`` | ``cka``. ``reference_data``: for sts a file
    of scored pairs or a ``(sentence1s, sentence2s, scores)`` tuple; for ppl a text file or a
    list of texts (joined by blank lines); for cka a list of texts or a file (see
    :func:`load_reference_texts`); None uses ../shared/data (STS-B dev, WikiText-2 test) or,
    without it, the packaged text (ppl) or built-in sentences (cka). ``limit`` caps the pairs
    (sts), the tokens (ppl; default :data:`DEFAULT_MAX_TOKENS`, 2,048) or the texts (cka).
    ``before`` reuses a base score already measured (sts, ppl) so the base model is not run again.

    ``tuned=None`` measures the base alone (``after`` and ``change`` are then None).

    Returns ``{"reference", "source" (where the data came from, e.g. "wikitext-2 test
    (../shared/data)"), "before", "after", "change" (= after - before), "higher_is_better",
    "n" (pairs, tokens scored or texts), "limit" (the cap used: tokens for ppl, None when
    uncapped), "seconds"}``.
    """
    start = time.perf_counter()
    base = _unwrap(base)
    tuned = _unwrap(tuned) if tuned is not None else None
    kind = resolve_reference(tuned if tuned is not None else base, reference, reference_data)
    embed_kw = {"pooling": pooling, "batch_size": batch_size, "max_length": max_length}
    if kind == "sts":
        if isinstance(reference_data, tuple) and len(reference_data) == 3:
            pairs = tuple(spread(part, limit) for part in reference_data)
            source = IN_MEMORY_SOURCE
        else:
            pairs = load_sts_pairs(reference_data, limit=limit)
            source = sts_source(reference_data)
        n = len(pairs[2])
        if before is None:
            before = sts_spearman(base, tokenizer, pairs, **embed_kw)
        after = sts_spearman(tuned, tokenizer, pairs, **embed_kw) if tuned is not None else None
        higher = True
    elif kind == "ppl":
        if reference_data is None or isinstance(reference_data, (str, Path)):
            text, source = reference_text(reference_data)
        else:
            text, source = "\n\n".join(str(t) for t in reference_data), IN_MEMORY_SOURCE
        limit = max_tokens = limit if limit is not None else DEFAULT_MAX_TOKENS
        if before is None:
            before, n = perplexity_with_count(base, tokenizer, text, max_tokens=max_tokens)
        after = None
        if tuned is not None:
            after, n = perplexity_with_count(tuned, tokenizer, text, max_tokens=max_tokens)
        higher = False
    else:
        texts = load_reference_texts(reference_data, limit=limit)
        source = texts_source(reference_data)
        n = len(texts)
        before = 1.0
        after = representation_cka(base, tuned, tokenizer, texts, **embed_kw) if tuned is not None else None
        higher = True
    return {
        "reference": kind,
        "source": source,
        "before": float(before),
        "after": None if after is None else float(after),
        "change": None if after is None else float(after) - float(before),
        "higher_is_better": higher,
        "n": n,
        "limit": limit,
        "seconds": time.perf_counter() - start,
    }
