"""Retention: how much of the pretrained skill survives fine-tuning.

Three measures, one per kind of model (DESIGN.md, "Retention"):

- ``sts``: encoders that are sentence embedders. STS-B dev Spearman of the cosine of
  pooled (mean by default) embeddings against the gold scores. Higher is better;
  all-MiniLM-L6-v2 untouched scores about 0.867.
- ``ppl``: causal LMs. Sliding-window perplexity on general text (WikiText-2 test),
  capped at ``max_tokens`` (20k by default: the whole test set costs ~16 min per model
  on 2 CPUs). Lower is better.
- ``cka``: the generic fallback. Linear CKA between the base and the tuned model's pooled
  representations of the same reference texts. Before is 1.0 by definition; higher is better.

``measure(base, tuned, tokenizer)`` picks one (``reference="auto"``), scores both models
and returns a flat dict. ``base`` and ``tuned`` are backbones (HF ``AutoModel``) or causal
LMs; a :class:`~freezetune.model.SequenceClassifier` is unwrapped to its ``.backbone``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from freezetune.core.errors import FreezetuneError

REFERENCES = ("auto", "sts", "ppl", "cka")
DEFAULT_MAX_TOKENS = 20_000
STS_RELATIVE_PATH = ("glue", "STS-B", "dev.tsv")
TEXT_RELATIVE_PATH = ("wikitext-2", "wiki.test.raw")

Pairs = tuple[list[str], list[str], list[float]]

# Generic English sentences for CKA when no reference data exists (written here, not downloaded).
BUILTIN_SENTENCES: tuple[str, ...] = (
    "The sun rose slowly over the quiet village.",
    "She poured a cup of coffee and opened the newspaper.",
    "A small dog was barking at the mail carrier.",
    "The train to the city leaves every twenty minutes.",
    "He forgot his umbrella and got caught in the rain.",
    "Children were playing football in the park after school.",
    "The museum will be closed for repairs until next spring.",
    "Fresh bread smells wonderful early in the morning.",
    "The committee approved the new budget on Tuesday.",
    "Scientists discovered a new species of frog in the rainforest.",
    "My grandmother grows tomatoes and beans in her garden.",
    "The company reported higher profits than expected this quarter.",
    "A strong wind knocked down several trees during the night.",
    "Please turn off the lights when you leave the room.",
    "The river flooded the fields after days of heavy rain.",
    "They watched an old film and ate popcorn on the sofa.",
    "The doctor advised him to get more sleep and exercise.",
    "Our flight was delayed because of a technical problem.",
    "The students read a poem aloud in front of the class.",
    "The recipe calls for two eggs, flour, sugar and butter.",
    "Traffic was heavy on the highway this afternoon.",
    "The library offers free courses on computer programming.",
    "A man is playing the guitar on a street corner.",
    "The cat is sleeping on the warm windowsill.",
    "Prices of fruit and vegetables rose sharply last month.",
    "The team celebrated their victory with their fans.",
    "He painted the fence white over the weekend.",
    "The mountains were covered in snow by early November.",
    "She is learning to speak Spanish before her trip.",
    "The city council plans to build a new bridge.",
    "A woman is slicing an onion in the kitchen.",
    "The meeting has been moved to Thursday morning.",
    "Birds were singing in the trees outside my window.",
    "The novel tells the story of a family across three generations.",
    "The restaurant on the corner serves excellent soup.",
    "He repaired the old bicycle and rode it to work.",
    "The storm cut power to thousands of homes.",
    "Voters will choose a new mayor in the autumn election.",
    "The baby laughed when the puppy licked her hand.",
    "The bakery sold out of cakes before noon.",
    "An orchestra performed a concert in the town square.",
    "The price of the house was higher than they could afford.",
    "She wrote a letter to her friend who lives abroad.",
    "The engineers tested the engine for several hours.",
    "A group of tourists took photographs of the cathedral.",
    "The farmer milks the cows twice a day.",
    "The software update fixed several security problems.",
    "He was nervous before his first job interview.",
    "The lake was calm and reflected the evening sky.",
    "Two men are sitting on a bench and talking.",
)


# --------------------------------------------------------------------------- reference data


def default_sts_path() -> Path | None:
    """STS-B dev beside the repo (``../shared/data/glue/STS-B/dev.tsv``), or None."""
    from freezetune.io.defaults import shared_data_dir

    root = shared_data_dir()
    path = root.joinpath(*STS_RELATIVE_PATH) if root is not None else None
    return path if path is not None and path.is_file() else None


def default_text_path() -> Path | None:
    """WikiText-2 raw test beside the repo (``../shared/data/wikitext-2/wiki.test.raw``), or None."""
    from freezetune.io.defaults import shared_data_dir

    root = shared_data_dir()
    path = root.joinpath(*TEXT_RELATIVE_PATH) if root is not None else None
    return path if path is not None and path.is_file() else None


def load_sts_pairs(path: str | Path | None = None, limit: int | None = None) -> Pairs:
    """Scored sentence pairs ``(sentence1, sentence2, score)``: STS-B dev by default.

    A user file is a CSV / TSV / JSONL table with columns ``sentence1``, ``sentence2`` and
    ``score`` (TSV is read with quoting off, which STS-B needs). ``limit`` keeps that many
    evenly spaced rows (every genre represented). Rows with a missing sentence or score are dropped.
    """
    if path is None:
        path = default_sts_path()
        if path is None:
            raise FreezetuneError(
                "no STS-B data found (../shared/data/glue/STS-B/dev.tsv): "
                "--reference-data must point to scored pairs (columns sentence1, sentence2, score)"
            )
    path = Path(path)
    if not path.is_file():
        raise FreezetuneError(
            f"no such file: {path}; --reference-data must point to scored pairs (columns sentence1, sentence2, score)"
        )
    from freezetune.io.data import read_table

    frame = read_table(path)
    missing = [c for c in ("sentence1", "sentence2", "score") if c not in frame.columns]
    if missing:
        raise FreezetuneError(
            f"{path} lacks column(s) {', '.join(missing)}: --reference-data must point to scored pairs "
            f"(columns sentence1, sentence2, score); it has {', '.join(map(str, frame.columns))}"
        )
    frame = frame[["sentence1", "sentence2", "score"]].dropna()
    try:
        scores = [float(s) for s in frame["score"]]
    except (TypeError, ValueError):
        raise FreezetuneError(f"{path}: column score must hold numbers") from None
    first = [str(s) for s in frame["sentence1"]]
    second = [str(s) for s in frame["sentence2"]]
    if limit is not None:
        first, second, scores = _spread(first, limit), _spread(second, limit), _spread(scores, limit)
    if len(scores) < 2:
        raise FreezetuneError(f"{path}: need at least 2 scored pairs, found {len(scores)}")
    return first, second, scores


def load_reference_text(path: str | Path | None = None) -> str:
    """General text for perplexity: WikiText-2 raw test by default."""
    if path is None:
        path = default_text_path()
        if path is None:
            raise FreezetuneError(
                "no WikiText-2 test found (../shared/data/wikitext-2/wiki.test.raw): "
                "--reference-data must point to a plain-text file"
            )
    path = Path(path)
    if not path.is_file():
        raise FreezetuneError(f"no such file: {path}; --reference-data must point to a plain-text file")
    text = path.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        raise FreezetuneError(f"{path} holds no text")
    return text


def load_reference_texts(source: str | Path | Sequence[str] | None = None, limit: int | None = None) -> list[str]:
    """Texts for CKA: a given list; or a file (scored pairs, a table with a ``text`` column, or
    plain text, one text a line); or, with none given, STS-B dev's sentences when present, else
    the built-in sentences."""
    if source is None:
        texts = _unique(sum(load_sts_pairs()[:2], [])) if default_sts_path() else list(BUILTIN_SENTENCES)
    elif isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise FreezetuneError(f"no such file: {path}; --reference-data must point to texts or scored pairs")
        if path.suffix.lower() in (".csv", ".tsv", ".jsonl", ".json", ".parquet"):
            from freezetune.io.data import read_table

            frame = read_table(path)
            if {"sentence1", "sentence2"} <= set(frame.columns):
                texts = _unique([str(t) for c in ("sentence1", "sentence2") for t in frame[c].dropna()])
            elif "text" in frame.columns:
                texts = [str(t) for t in frame["text"].dropna()]
            else:
                raise FreezetuneError(f"{path}: need a text column, or sentence1 and sentence2")
        else:
            texts = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines()]
            texts = [t for t in texts if t]
    else:
        texts = [str(t) for t in source]
    texts = _spread(texts, limit)
    if len(texts) < 2:
        raise FreezetuneError(f"CKA needs at least 2 reference texts, found {len(texts)}")
    return texts


def _unique(texts: list[str]) -> list[str]:
    return list(dict.fromkeys(texts))


def _spread(items: Sequence, limit: int | None) -> list:
    """``limit`` evenly spaced items, first included, in order (all when limit is None or large).

    STS-B dev is sorted by genre (captions, then news, then forums): the first rows alone
    would be an easy, unrepresentative sample.
    """
    items = list(items)
    if limit is None or limit >= len(items):
        return items
    if limit < 1:
        raise FreezetuneError(f"limit must be at least 1, not {limit}")
    return [items[i * len(items) // limit] for i in range(limit)]


# --------------------------------------------------------------------------- models


def _unwrap(model: nn.Module) -> nn.Module:
    """A SequenceClassifier's backbone; any other model as given."""
    from freezetune.core.model import SequenceClassifier

    return model.backbone if isinstance(model, SequenceClassifier) else model


def is_causal_lm(model: nn.Module) -> bool:
    """A model with a language-modelling head that predicts the next token."""
    name = type(_unwrap(model)).__name__
    return "CausalLM" in name or "LMHeadModel" in name


def _device_of(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


class _EvalMode:
    """Eval mode inside, each module's own training flag restored after (mixed modes survive)."""

    def __init__(self, model: nn.Module):
        self.model = model

    def __enter__(self):
        self.modes = [(m, m.training) for m in self.model.modules()]
        self.model.eval()
        return self.model

    def __exit__(self, *exc):
        for module, mode in self.modes:
            module.training = mode
        return False


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
    from freezetune.core.model import POOLINGS, pool_hidden

    if pooling not in POOLINGS:
        raise FreezetuneError(f"unknown pooling {pooling!r}; choose from {', '.join(POOLINGS)}")
    model = _unwrap(backbone)
    body = getattr(model, "base_model", model)  # a causal LM's body: no vocabulary-sized logits
    device = torch.device(device) if device is not None else _device_of(model)
    texts = [str(t) for t in texts]
    if not texts:
        return torch.empty(0, getattr(model.config, "hidden_size", 0))
    encoded = tokenizer(texts, truncation=True, max_length=max_length, verbose=False)["input_ids"]
    order = sorted(range(len(texts)), key=lambda i: len(encoded[i]))
    out: list[torch.Tensor | None] = [None] * len(texts)
    with _EvalMode(model), torch.no_grad():
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
    device = _device_of(model)
    total, count, scored_to = 0.0, 0, 1  # the first token has no context: never scored
    with _EvalMode(model), torch.no_grad():
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
        if reference_data is not None and not isinstance(reference_data, (str, Path)):
            return "ppl"  # text given in memory
        return "ppl" if (reference_data is not None or default_text_path()) else "cka"
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
    for cka without it, built-in sentences. ``limit`` caps the pairs (sts), the tokens (ppl;
    default 20,000) or the texts (cka). ``before`` reuses a base score already measured (sts,
    ppl) so the base model is not run again.

    ``tuned=None`` measures the base alone (``after`` and ``change`` are then None).

    Returns ``{"reference", "before", "after", "change" (= after - before),
    "higher_is_better", "n" (pairs, tokens scored or texts), "seconds"}``.
    """
    start = time.perf_counter()
    base = _unwrap(base)
    tuned = _unwrap(tuned) if tuned is not None else None
    kind = resolve_reference(tuned if tuned is not None else base, reference, reference_data)
    embed_kw = {"pooling": pooling, "batch_size": batch_size, "max_length": max_length}
    if kind == "sts":
        if isinstance(reference_data, tuple) and len(reference_data) == 3:
            pairs = tuple(_spread(part, limit) for part in reference_data)
        else:
            pairs = load_sts_pairs(reference_data, limit=limit)
        n = len(pairs[2])
        if before is None:
            before = sts_spearman(base, tokenizer, pairs, **embed_kw)
        after = sts_spearman(tuned, tokenizer, pairs, **embed_kw) if tuned is not None else None
        higher = True
    elif kind == "ppl":
        if reference_data is None or isinstance(reference_data, (str, Path)):
            text = load_reference_text(reference_data)
        else:
            text = "\n\n".join(str(t) for t in reference_data)
        max_tokens = limit if limit is not None else DEFAULT_MAX_TOKENS
        if before is None:
            before, n = perplexity_with_count(base, tokenizer, text, max_tokens=max_tokens)
        after = None
        if tuned is not None:
            after, n = perplexity_with_count(tuned, tokenizer, text, max_tokens=max_tokens)
        higher = False
    else:
        texts = load_reference_texts(reference_data, limit=limit)
        n = len(texts)
        before = 1.0
        after = representation_cka(base, tuned, tokenizer, texts, **embed_kw) if tuned is not None else None
        higher = True
    return {
        "reference": kind,
        "before": float(before),
        "after": None if after is None else float(after),
        "change": None if after is None else float(after) - float(before),
        "higher_is_better": higher,
        "n": n,
        "seconds": time.perf_counter() - start,
    }


# ---------------------------------------------------------------------- command line
def add_retention_parser(subparsers):
    parser = subparsers.add_parser(
        "retention",
        help="how much of the pretrained skill a trained checkpoint kept (before / after / change)",
        description="Measure the base model and the tuned checkpoint on a reference skill: STS-B Spearman "
                    "of mean-pooled embeddings (sentence encoders), perplexity on reference text (causal LMs) "
                    "or CKA between base and tuned representations (any model).",
    )
    parser.add_argument("--checkpoint", required=True, metavar="RUN_OR_CKPT",
                        help="checkpoint folder, or a run folder holding checkpoint/")
    parser.add_argument("--reference", default="auto", choices=("auto", "sts", "ppl", "cka"),
                        help="auto: sts when STS-B is available for an encoder, else cka (default: auto)")
    parser.add_argument("--reference-data", "--reference_data", dest="reference_data", default=None,
                        help="scored pairs (sentence1, sentence2, score) for sts; text for ppl / cka "
                             "(default: ../shared/data STS-B dev or WikiText-2 test, else built-in sentences)")
    parser.add_argument("--limit", type=int, default=None,
                        help="at most this many pairs / texts (tokens for ppl; default 20,000 tokens)")
    parser.add_argument("--model", default=None, metavar="PATH",
                        help="base model folder when it moved since training (must match the fingerprint)")
    parser.set_defaults(run=cmd_retention)
    return parser


def cmd_retention(args) -> int:
    from freezetune.io.checkpoint import load_checkpoint
    from freezetune.core.model import load_classifier

    tuned, tokenizer, meta = load_checkpoint(args.checkpoint, base_path=args.model)
    base = load_classifier(args.model or meta["base_model"], len(meta["label_names"]),
                           pooling=tuned.pooling, gguf_file=meta.get("gguf_file"))
    kind = resolve_reference(tuned.backbone, args.reference, args.reference_data)
    result = measure(base.backbone, tuned.backbone, tokenizer, reference=kind, reference_data=args.reference_data,
                     limit=args.limit, pooling="mean" if kind == "sts" else tuned.pooling)
    direction = "higher is better" if result["higher_is_better"] else "lower is better"
    print(f"retention ({result['reference']}, {direction}, n={result['n']}): before {result['before']:.4f}  "
          f"after {result['after']:.4f}  change {result['change']:+.4f}  ({result['seconds']:.1f} s)")
    return 0
