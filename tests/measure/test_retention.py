"""Retention measures: STS Spearman, capped perplexity, linear CKA, and `measure`.

Unit tests use tiny models built from config with the embedded MiniLM tokenizer
(vocabulary 30,522); the integration test scores the real MiniLM on STS-B dev.
"""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch

from freezetune.core.errors import FreezetuneError
from freezetune.io.defaults import default_model_path, shared_data_dir
from freezetune.measure import references, retention

VOCAB = 30522
TEXTS = list(references.BUILTIN_SENTENCES[:16])
PAIRS = (
    ["A man is playing a guitar.", "A dog runs in the park.", "The stock market fell today.",
     "A woman is cooking dinner.", "Children are swimming.", "The cat sleeps on the sofa."],
    ["A man plays the guitar.", "A cat sits on a wall.", "Shares dropped sharply today.",
     "A person is riding a bike.", "Kids swim in a pool.", "A train leaves the station."],
    [4.8, 0.5, 4.0, 0.4, 4.2, 0.0],
)


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(default_model_path())


def make_bert():
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    return BertModel(BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        vocab_size=VOCAB, max_position_embeddings=128,
    ))


def make_gpt2(n_positions: int = 64):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(n_embd=16, n_layer=2, n_head=2, vocab_size=VOCAB, n_positions=n_positions))


def perturbed(model, scale: float = 0.5, seed: int = 1):
    """A copy whose weight matrices moved by noise of `scale` times each tensor's std."""
    other = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in other.named_parameters():
            if p.dim() == 2:
                p.add_(torch.randn(p.shape, generator=g) * p.std() * scale)
    return other


@pytest.fixture(scope="module")
def bert():
    return make_bert()


@pytest.fixture(scope="module")
def gpt2():
    return make_gpt2()


@pytest.fixture
def no_shared_data(monkeypatch, tmp_path):
    monkeypatch.setenv("FREEZETUNE_SHARED_DATA", str(tmp_path / "absent"))


# --------------------------------------------------------------------------- CKA


def test_cka_identical_orthogonal_and_scaling():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20, 12, generator=g, dtype=torch.float64)
    assert retention.linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    q, _ = torch.linalg.qr(torch.randn(12, 12, generator=g, dtype=torch.float64))
    assert retention.linear_cka(x, x @ q) == pytest.approx(1.0, abs=1e-10)
    assert retention.linear_cka(x, 7.5 * x) == pytest.approx(1.0, abs=1e-12)
    y = torch.randn(20, 30, generator=g, dtype=torch.float64)
    value = retention.linear_cka(x, y)
    assert 0.0 < value < 0.9
    assert retention.linear_cka(x @ q * 3.0, y) == pytest.approx(value, abs=1e-10)


def test_cka_fewer_examples_than_features_and_errors():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 200, generator=g)
    assert retention.linear_cka(x, x) == pytest.approx(1.0, abs=1e-9)
    assert 0.0 <= retention.linear_cka(x, torch.randn(6, 50, generator=g)) <= 1.0
    with pytest.raises(FreezetuneError, match="same n"):
        retention.linear_cka(x, torch.randn(5, 200))
    with pytest.raises(FreezetuneError, match="constant"):
        retention.linear_cka(torch.ones(6, 3), x)


def test_representation_cka_drops_after_perturbing(bert, tokenizer):
    same = retention.representation_cka(bert, bert, tokenizer, TEXTS)
    assert same == pytest.approx(1.0, abs=1e-9)
    moved = retention.representation_cka(bert, perturbed(bert), tokenizer, TEXTS)
    assert moved < 0.99


# --------------------------------------------------------------------------- embed / STS


def test_embed_order_shape_and_batching(bert, tokenizer):
    texts = ["short", "a much longer sentence than the first one is", "mid length text"]
    together = retention.embed(bert, tokenizer, texts, batch_size=2)
    assert together.shape == (3, 32) and together.dtype == torch.float32
    alone = torch.cat([retention.embed(bert, tokenizer, [t]) for t in texts])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-4)
    for pooling in ("cls", "last"):
        assert retention.embed(bert, tokenizer, texts, pooling=pooling).shape == (3, 32)
    with pytest.raises(FreezetuneError, match="pooling"):
        retention.embed(bert, tokenizer, texts, pooling="max")


def test_embed_restores_modes(bert, tokenizer):
    bert.train()
    bert.encoder.layer[0].eval()  # mixed modes must survive, not be flattened by .train()
    retention.embed(bert, tokenizer, TEXTS[:3])
    assert bert.training and bert.encoder.layer[1].training
    assert not bert.encoder.layer[0].training and not bert.encoder.layer[0].attention.training
    bert.eval()
    retention.embed(bert, tokenizer, TEXTS[:3])
    assert not any(m.training for m in bert.modules())


def test_sts_spearman_deterministic_and_dropout_off(bert, tokenizer):
    bert.train()  # dropout must not leak in: embed runs in eval mode
    first = retention.sts_spearman(bert, tokenizer, PAIRS)
    second = retention.sts_spearman(bert, tokenizer, PAIRS, batch_size=3)
    assert -1.0 <= first <= 1.0
    assert first == pytest.approx(second, abs=1e-12)
    assert bert.training
    bert.eval()


def test_embed_on_causal_lm_uses_body(gpt2, tokenizer):
    vectors = retention.embed(gpt2, tokenizer, TEXTS[:4], pooling="last")
    assert vectors.shape == (4, 16)


# --------------------------------------------------------------------------- data


def test_load_sts_pairs_user_files_and_errors(tmp_path):
    csv_path = tmp_path / "pairs.csv"
    csv_path.write_text('sentence1,sentence2,score\n"a, b",c,1.5\nd,e,4\nf,g,\nh,i,2\n')
    first, second, scores = references.load_sts_pairs(csv_path)
    assert first == ["a, b", "d", "h"] and second == ["c", "e", "i"] and scores == [1.5, 4.0, 2.0]
    jsonl = tmp_path / "pairs.jsonl"
    rows = [{"sentence1": f"s{i}", "sentence2": f"t{i}", "score": i} for i in range(10)]
    jsonl.write_text("".join(json.dumps(row) + "\n" for row in rows))
    first, _, scores = references.load_sts_pairs(jsonl, limit=5)
    assert first == ["s0", "s2", "s4", "s6", "s8"] and scores == [0, 2, 4, 6, 8]  # evenly spread
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\nx,1\ny,0\n")
    with pytest.raises(FreezetuneError, match="--reference-data must point to scored pairs"):
        references.load_sts_pairs(bad)
    with pytest.raises(FreezetuneError, match="--reference-data"):
        references.load_sts_pairs(tmp_path / "missing.tsv")


def test_missing_shared_data_errors_or_falls_back(no_shared_data):
    with pytest.raises(FreezetuneError, match="--reference-data must point to scored pairs"):
        references.load_sts_pairs()
    assert references.load_reference_text() == references.packaged_text()
    assert references.load_reference_texts() == list(references.BUILTIN_SENTENCES)
    assert references.texts_source() == references.BUILTIN_SENTENCES_SOURCE
    assert len(references.BUILTIN_SENTENCES) >= 40


# --------------------------------------------------------------------------- perplexity's text source


def test_packaged_text_is_general_prose_with_its_licence(tokenizer):
    from importlib.resources import files

    text = references.packaged_text()
    words = text.split()
    assert len(words) > 3500
    assert len(tokenizer(text, verbose=False)["input_ids"]) > retention.DEFAULT_MAX_TOKENS  # covers the cap
    paragraphs = [p for p in text.split("\n\n") if p.strip()]
    assert sum(len(p.split()) > 60 for p in paragraphs) >= 30  # prose paragraphs, not lists
    folder = files("freezetune.measure").joinpath("reference_text")
    assert "CC0" in folder.joinpath("LICENSE").read_text() and "CC0" in folder.joinpath("README.md").read_text()
    assert "CC0" in references.__doc__


def test_text_source_order(tmp_path, monkeypatch):
    given = tmp_path / "mine.txt"
    given.write_text("My own reference text, two sentences. Here is the second.")
    shared = tmp_path / "shared"
    wiki = shared.joinpath(*references.TEXT_RELATIVE_PATH)
    wiki.parent.mkdir(parents=True)
    wiki.write_text(" = Title = \n Some wiki text . \n")
    monkeypatch.setenv("FREEZETUNE_SHARED_DATA", str(shared))
    # 1. a given file wins even when ../shared/data has WikiText-2
    assert references.reference_text(given) == (given.read_text(), f"file: {given.resolve()}")
    # 2. else WikiText-2 test from ../shared/data
    assert references.reference_text() == (wiki.read_text(), references.SHARED_TEXT_SOURCE)
    # 3. else the packaged text
    monkeypatch.setattr(references, "shared_data_dir", lambda: None)
    assert references.reference_text() == (references.packaged_text(), references.PACKAGED_TEXT_SOURCE)
    with pytest.raises(FreezetuneError, match="--retention-data"):
        references.reference_text(tmp_path / "missing.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    with pytest.raises(FreezetuneError, match="no text"):
        references.reference_text(empty)


@pytest.mark.skipif(shared_data_dir() is None, reason="../shared/data is absent")
def test_default_text_is_the_shared_wikitext():
    text, source = references.reference_text()
    assert source == references.SHARED_TEXT_SOURCE == "wikitext-2 test (../shared/data)"
    assert text.startswith(" = Robert Boulter = ")


def test_measure_ppl_names_its_source_and_cap(tokenizer, tmp_path, monkeypatch):
    from transformers import LlamaConfig, LlamaForCausalLM

    from freezetune.core.causal_lm import CausalLM

    torch.manual_seed(0)
    llama = LlamaForCausalLM(LlamaConfig(
        hidden_size=16, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
        intermediate_size=32, vocab_size=VOCAB, max_position_embeddings=128,
    ))
    given = tmp_path / "mine.txt"
    given.write_text(" ".join(references.BUILTIN_SENTENCES))
    mine = retention.measure(llama, llama, tokenizer, reference_data=str(given), limit=100)
    assert mine["reference"] == "ppl" and mine["source"] == f"file: {given.resolve()}"
    assert mine["limit"] == 100 and mine["n"] == 99
    monkeypatch.setattr(references, "shared_data_dir", lambda: None)  # a user's machine: no ../shared
    wrapped = CausalLM(llama)  # the causal-LM task's model unwraps to its ...ForCausalLM
    assert retention.resolve_reference(wrapped) == "ppl"
    packaged = retention.measure(wrapped, None, tokenizer)
    assert packaged["source"] == references.PACKAGED_TEXT_SOURCE
    assert packaged["limit"] == retention.DEFAULT_MAX_TOKENS and packaged["n"] == retention.DEFAULT_MAX_TOKENS - 1
    assert packaged["after"] is None and VOCAB / 3 < packaged["before"] < VOCAB * 3  # untrained: ~uniform
    in_memory = retention.measure(llama, None, tokenizer, reference="ppl", reference_data=TEXTS, limit=50)
    assert in_memory["source"] == references.IN_MEMORY_SOURCE


def test_measure_sts_and_cka_name_their_source(bert, tokenizer, tmp_path, no_shared_data):
    assert retention.measure(bert, None, tokenizer, reference_data=PAIRS)["source"] == references.IN_MEMORY_SOURCE
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("sentence1\tsentence2\tscore\n" + "".join(f"a{i}\tb{i}\t{i}\n" for i in range(4)))
    assert retention.measure(bert, None, tokenizer, reference_data=pairs)["source"] == f"file: {pairs.resolve()}"
    cka = retention.measure(bert, bert, tokenizer, limit=8)
    assert cka["reference"] == "cka" and cka["source"] == references.BUILTIN_SENTENCES_SOURCE
    assert cka["limit"] == 8


@pytest.mark.skipif(shared_data_dir() is None, reason="../shared/data is absent")
def test_default_sts_b_dev_has_every_row():
    first, second, scores = references.load_sts_pairs()
    assert len(first) == len(second) == len(scores) == 1500  # quoting off: no row lost
    assert min(scores) >= 0.0 and max(scores) <= 5.0


# --------------------------------------------------------------------------- perplexity


def test_perplexity_untrained_is_about_vocab_size(gpt2, tokenizer):
    text = " ".join(references.BUILTIN_SENTENCES)
    ppl = retention.perplexity(gpt2, tokenizer, text, max_tokens=200, window=64)
    assert VOCAB / 3 < ppl < VOCAB * 3


def test_perplexity_matches_hf_loss_in_one_window(gpt2, tokenizer):
    text = " ".join(references.BUILTIN_SENTENCES[:3])
    ids = tokenizer(text)["input_ids"]
    assert len(ids) < 64
    gpt2.eval()  # built from config: train mode, dropout on
    with torch.no_grad():
        loss = gpt2(input_ids=torch.tensor([ids]), labels=torch.tensor([ids])).loss
    ppl, count = retention.perplexity_with_count(gpt2, tokenizer, text, window=64)
    assert count == len(ids) - 1
    assert ppl == pytest.approx(math.exp(loss.item()), rel=1e-4)


def test_perplexity_respects_max_tokens_window_and_stride(gpt2, tokenizer):
    text = " ".join(references.BUILTIN_SENTENCES)
    seen = []
    hook = gpt2.register_forward_pre_hook(lambda m, a, kw: seen.append(kw["input_ids"].shape[1]), with_kwargs=True)
    try:
        _, count = retention.perplexity_with_count(gpt2, tokenizer, text, max_tokens=150, window=512)
    finally:
        hook.remove()
    assert count == 149  # every token of the first 150 but the first, once
    assert seen == [64, 64, 64]  # the window is capped at the model's 64 positions; 63 new tokens each
    seen.clear()
    _, overlapped = retention.perplexity_with_count(gpt2, tokenizer, text, max_tokens=150, window=40, stride=20)
    assert overlapped == 149  # each token scored once whatever the stride
    with pytest.raises(FreezetuneError, match="stride"):
        retention.perplexity(gpt2, tokenizer, text, window=40, stride=40)
    with pytest.raises(FreezetuneError, match="causal LM"):
        retention.perplexity(make_bert(), tokenizer, text)


# --------------------------------------------------------------------------- measure


def test_measure_sts_unchanged_and_perturbed(bert, tokenizer):
    same = retention.measure(bert, bert, tokenizer, reference_data=PAIRS)
    assert same["reference"] == "sts" and same["higher_is_better"] is True
    assert same["change"] == 0.0 and same["n"] == 6 and same["seconds"] >= 0
    moved = retention.measure(bert, perturbed(bert, scale=1.0), tokenizer, reference="sts", reference_data=PAIRS)
    assert moved["before"] == same["before"] and moved["change"] != 0.0
    assert moved["change"] == pytest.approx(moved["after"] - moved["before"])


def test_measure_ppl_unchanged_and_perturbed(gpt2, tokenizer, tmp_path):
    text_file = tmp_path / "ref.txt"
    text_file.write_text(" ".join(references.BUILTIN_SENTENCES))
    same = retention.measure(gpt2, gpt2, tokenizer, reference_data=str(text_file), limit=120)
    assert same["reference"] == "ppl" and same["higher_is_better"] is False
    assert same["change"] == 0.0 and same["n"] == 119
    moved = retention.measure(gpt2, perturbed(gpt2, scale=3.0), tokenizer, reference="ppl",
                              reference_data=list(TEXTS), limit=120)
    assert moved["change"] != 0.0
    reused = retention.measure(gpt2, gpt2, tokenizer, reference_data=str(text_file), limit=120, before=123.0)
    assert reused["before"] == 123.0


def test_measure_cka_fallback_unchanged_and_perturbed(bert, gpt2, tokenizer, no_shared_data):
    from freezetune.core.model import SequenceClassifier

    same = retention.measure(bert, bert, tokenizer, limit=12)
    assert same["reference"] == "cka" and same["before"] == 1.0 and same["n"] == 12
    assert same["change"] == pytest.approx(0.0, abs=1e-12)
    classifier = SequenceClassifier(perturbed(bert), num_labels=2, pooling="mean")
    moved = retention.measure(bert, classifier, tokenizer, limit=12)  # classifiers unwrap to .backbone
    assert moved["change"] < -0.01 and moved["higher_is_better"] is True
    lm = retention.measure(gpt2, gpt2, tokenizer, reference_data=TEXTS[:8], reference="cka")
    assert lm["reference"] == "cka" and lm["n"] == 8
    assert retention.resolve_reference(gpt2) == "ppl"  # causal LM, no ../shared: the packaged text


def test_resolve_reference(bert, gpt2, tmp_path):
    pairs = tmp_path / "p.tsv"
    pairs.write_text("sentence1\tsentence2\tscore\na\tb\t1\nc\td\t2\n")
    text = tmp_path / "t.txt"
    text.write_text("some text\nmore text\n")
    assert retention.resolve_reference(bert, "auto", pairs) == "sts"
    assert retention.resolve_reference(bert, "auto", text) == "cka"
    assert retention.resolve_reference(gpt2, "auto", text) == "ppl"
    with pytest.raises(FreezetuneError, match="causal LM"):
        retention.resolve_reference(bert, "ppl")
    with pytest.raises(FreezetuneError, match="unknown retention reference"):
        retention.resolve_reference(bert, "bleu")
    with pytest.raises(FreezetuneError, match="no such file"):
        retention.resolve_reference(bert, "auto", str(tmp_path / "nope.tsv"))


# --------------------------------------------------------------------------- integration


@pytest.mark.integration
@pytest.mark.skipif(shared_data_dir() is None, reason="../shared/data is absent")
def test_minilm_sts_b_spearman():
    """The untouched MiniLM scores ~0.867 on all 1,500 pairs; 500 evenly spread pairs keep the
    test short (0.878 measured), so the bounds are widened to 0.85..0.90."""
    from freezetune.core.model import load_classifier, load_tokenizer

    path = default_model_path()
    backbone = load_classifier(path, 2).backbone
    pairs = references.load_sts_pairs(limit=500)
    assert retention.resolve_reference(backbone) == "sts"
    assert 0.85 <= retention.sts_spearman(backbone, load_tokenizer(path), pairs) <= 0.90


@pytest.mark.integration
def test_smollm2_perplexity_on_the_packaged_text(monkeypatch):
    """A user's machine (no ../shared): SmolLM2 reads the packaged prose as ordinary English
    (512 tokens: 32.9 measured; 29.5 on the default 2,048, WikiText-2 test 30.2)."""
    from freezetune.core.causal_lm import load_causal_lm
    from freezetune.core.model import load_tokenizer
    from freezetune.io import defaults

    monkeypatch.setattr(references, "shared_data_dir", lambda: None)
    folder, gguf = defaults.smollm2_gguf()
    lm = load_causal_lm(folder, gguf_file=gguf)
    result = retention.measure(lm, None, load_tokenizer(folder, gguf_file=gguf), limit=512)
    assert result["reference"] == "ppl" and result["source"] == references.PACKAGED_TEXT_SOURCE
    assert result["n"] == 511 and result["limit"] == 512
    assert 20 < result["before"] < 50
