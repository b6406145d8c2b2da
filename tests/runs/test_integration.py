"""The real embedded models and data (marker: integration; `make test` runs them)."""

import json

import pytest
import torch

from freezetune.cli.main import main
from freezetune.core.layout import LayerMap, frozen_state
from freezetune.core.model import load_classifier, load_tokenizer
from freezetune.io import defaults
from freezetune.strategies.registry import resolve

pytestmark = pytest.mark.integration

MINILM_BLOCK = 1_774_464
MINILM_EMBEDDINGS = 11_918_592


@pytest.fixture(scope="module")
def minilm():
    torch.manual_seed(0)
    return load_classifier(defaults.default_model_path(), 3)


def test_minilm_map_and_default_pooling(minilm):
    layers = LayerMap.from_model(minilm)
    assert minilm.pooling == "mean"  # read from 1_Pooling/config.json
    assert layers.num_blocks == 6
    counts = layers.counts()
    assert counts["embeddings"] == MINILM_EMBEDDINGS
    assert all(counts[f"block.{i}"] == MINILM_BLOCK for i in range(6))
    assert counts["head"] == 384 * 3 + 3
    expected = {
        "full": layers.total(),
        "head_only": 1155,
        "lower_half": 3 * MINILM_BLOCK + 1155,
        "alternate": 3 * MINILM_BLOCK + 1155,
        "top_k:2": 2 * MINILM_BLOCK + 1155,
    }
    for spec, count in expected.items():
        assert resolve(spec, layers).apply(minilm, layers) == count, spec


def test_minilm_training_keeps_frozen_weights_bit_identical(minilm):
    from freezetune.training.finetuner import Finetuner

    tokenizer = load_tokenizer(defaults.default_model_path())
    texts = ["what a great day", "this is awful", "it is a car", "love it", "hate it", "fine I guess"] * 4
    encoded = tokenizer(texts, padding=True, return_tensors="pt")
    labels = torch.tensor([2, 0, 1, 2, 0, 1] * 4)
    batches = [{**{k: v[i : i + 8] for k, v in encoded.items()}, "labels": labels[i : i + 8]} for i in range(0, 24, 8)]
    tuner = Finetuner(minilm, "top_k:2", lr=1e-3, epochs=2, progress=False)
    before = frozen_state(minilm)
    tuner.fit(batches)
    assert all(torch.equal(p, before[n]) for n, p in minilm.named_parameters() if n in before)
    assert len(before) > 0


def test_cli_trains_on_the_embedded_tweets(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--strategy", "top_k:2", "--max-train-rows", "300", "--max-length", "48",
                 "--epochs", "1", "--no-progress", "--output", str(out)])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data"]["labels"] == ["negative", "neutral", "positive"]
    assert metrics["costs"]["trainable_params"] == 2 * MINILM_BLOCK + 1155
    assert 0.0 <= metrics["validation"]["accuracy"] <= 1.0


@pytest.fixture(scope="module")
def smollm2():
    from transformers import AutoModelForCausalLM

    folder, gguf = defaults.smollm2_gguf()
    return AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf, dtype=torch.float32)


def test_smollm2_from_gguf_maps_with_tied_embeddings(smollm2):
    layers = LayerMap.from_model(smollm2)
    assert layers.num_blocks == 30
    assert layers.block_path == "model.layers"
    assert layers.tied == {"lm_head.weight": "model.embed_tokens.weight"}
    counts = layers.counts()
    assert counts["head"] == 576  # the final RMSNorm; lm_head is the tied embedding
    assert counts["embeddings"] == 49152 * 576
    assert resolve("top_k:2", layers).frozen_prefix_depth(30) == 28
