"""LayerMap on tiny BERT, GPT-2 and Llama models: units, counts, tied weights, errors."""

import pytest
import torch

from conftest import tiny_bert, tiny_classifier, tiny_gpt2, tiny_llama
from freezetune.core.errors import FreezetuneError
from freezetune.core.layout import LayerMap, find_blocks

# Tiny BERT: hidden 32, FFN 64, vocab 100, 64 positions, 2 token types.
BERT_EMBEDDINGS = 100 * 32 + 64 * 32 + 2 * 32 + 2 * 32  # words, positions, types, LayerNorm
BERT_BLOCK = 4 * (32 * 32 + 32) + 2 * 2 * 32 + (32 * 64 + 64) + (64 * 32 + 32)  # attn, 2 LN, FFN
MEAN_HEAD = 32 * 3 + 3  # classifier only: the unused CLS pooler is dropped
CLS_HEAD = 32 * 32 + 32 + MEAN_HEAD  # pooler + classifier


def test_bert_classifier_units_and_counts():
    layers = LayerMap.from_model(tiny_classifier("mean"))
    assert layers.unit_names() == ["embeddings", "block.0", "block.1", "block.2", "block.3", "head"]
    counts = layers.counts()
    assert counts["embeddings"] == BERT_EMBEDDINGS == 5376
    assert all(counts[f"block.{i}"] == BERT_BLOCK == 8544 for i in range(4))
    assert counts["head"] == MEAN_HEAD == 99
    assert layers.total() == 39651
    assert layers.block_path == "backbone.encoder.layer"


def test_cls_pooling_keeps_pooler_in_head():
    layers = LayerMap.from_model(tiny_classifier("cls"))
    assert layers.counts()["head"] == CLS_HEAD == 1155
    assert "backbone.pooler.dense.weight" in layers.units["head"]


def test_bert_module_groups_partition_each_block():
    layers = LayerMap.from_model(tiny_classifier())
    block = layers.units["block.0"]
    by_group = {g: [n for n in block if layers.groups[n] == g] for g in ("attention", "ffn", "norm")}
    assert len(by_group["norm"]) == 4  # two LayerNorms, weight + bias
    assert all("attention" in n and "LayerNorm" not in n for n in by_group["attention"])
    assert {n.split(".")[-2] for n in by_group["ffn"]} == {"dense"}
    assert sum(len(v) for v in by_group.values()) == len(block)


def test_gpt2_tied_lm_head_belongs_to_embeddings():
    model = tiny_gpt2()
    layers = LayerMap.from_model(model)
    assert layers.tied == {"lm_head.weight": "transformer.wte.weight"}
    assert layers.unit_of("lm_head.weight") == "embeddings"
    counts = layers.counts()
    assert counts["embeddings"] == 50 * 16 + 32 * 16 == 1312
    assert counts["block.0"] == 32 + (16 * 48 + 48) + (16 * 16 + 16) + 32 + (16 * 64 + 64) + (64 * 16 + 16) == 3280
    assert counts["head"] == 32  # ln_f; lm_head is the tied embedding
    assert layers.total() == sum(p.numel() for p in model.parameters()) == 11184
    assert layers.groups["transformer.h.0.attn.c_attn.weight"] == "attention"
    assert layers.groups["transformer.h.0.mlp.c_fc.weight"] == "ffn"
    assert layers.groups["transformer.h.0.ln_1.weight"] == "norm"


@pytest.mark.parametrize("tie, head", [(True, 16), (False, 16 + 50 * 16)])
def test_llama_units(tie, head):
    layers = LayerMap.from_model(tiny_llama(tie=tie))
    counts = layers.counts()
    assert counts["embeddings"] == 800
    # q 16x16, k/v 8x16 (one KV head), o 16x16, gate/up/down 16x32, two RMSNorms
    assert counts["block.3"] == 256 + 128 + 128 + 256 + 3 * 512 + 32 == 2336
    assert counts["head"] == head
    assert bool(layers.tied) == tie
    assert layers.groups["model.layers.0.input_layernorm.weight"] == "norm"
    assert layers.groups["model.layers.0.self_attn.k_proj.weight"] == "attention"


def test_prefix_modules_include_gpt2_dropout_beside_embeddings():
    model = tiny_gpt2()
    layers = LayerMap.from_model(model)
    prefix = layers.prefix_modules(1)
    assert model.transformer.drop in prefix and model.transformer.wte in prefix
    assert model.transformer.h[0] in prefix and model.transformer.h[1] not in prefix
    assert model.transformer.ln_f not in prefix


def test_albert_shared_blocks_are_refused():
    from transformers import AlbertConfig, AlbertModel

    model = AlbertModel(AlbertConfig(hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
                                     intermediate_size=32, vocab_size=50, embedding_size=8))
    with pytest.raises(FreezetuneError, match="share weights"):
        LayerMap.from_model(model)


def test_model_without_blocks_is_refused():
    with pytest.raises(FreezetuneError, match="cannot find the transformer blocks"):
        find_blocks(torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU()))


def test_describe_lists_every_unit():
    text = LayerMap.from_model(tiny_bert()).describe()
    for unit in ("embeddings", "block.0", "block.3", "head", "total"):
        assert unit in text


@pytest.mark.parametrize("family", ["roberta", "distilbert", "qwen2", "mistral", "gpt2", "llama"])
def test_every_supported_family_maps_to_embeddings_blocks_head(family):
    from transformers import (
        DistilBertConfig,
        DistilBertModel,
        MistralConfig,
        MistralForCausalLM,
        Qwen2Config,
        Qwen2ForCausalLM,
        RobertaConfig,
        RobertaModel,
    )

    small = dict(hidden_size=16, num_hidden_layers=3, num_attention_heads=2, intermediate_size=32, vocab_size=60)
    decoder = dict(small, num_key_value_heads=1, max_position_embeddings=64)
    models = {
        "roberta": lambda: RobertaModel(RobertaConfig(**small, max_position_embeddings=40)),
        "distilbert": lambda: DistilBertModel(
            DistilBertConfig(dim=16, n_layers=3, n_heads=2, hidden_dim=32, vocab_size=60)
        ),
        "qwen2": lambda: Qwen2ForCausalLM(Qwen2Config(**decoder)),
        "mistral": lambda: MistralForCausalLM(MistralConfig(**decoder)),
        "gpt2": tiny_gpt2,
        "llama": tiny_llama,
    }
    model = models[family]()
    layers = LayerMap.from_model(model)
    assert layers.num_blocks == 3 or family in ("llama",) and layers.num_blocks == 4
    counts = layers.counts()
    assert counts["embeddings"] > 0 and counts["head"] >= 0
    assert sum(counts.values()) == sum(p.numel() for p in model.parameters())
    groups = {layers.groups[n] for n in layers.units["block.0"]}
    assert groups == {"attention", "ffn", "norm"}
