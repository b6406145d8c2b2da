"""Default pooling: decoders read their last token, encoders their CLS token or their own
sentence-transformers pooling (tiny configs; the real SmolLM2 behind the integration marker)."""

from __future__ import annotations

import json

import pytest
import torch

from freezetune.core.model import SequenceClassifier, default_pooling, is_decoder, load_classifier

TINY = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, vocab_size=64,
            max_position_embeddings=32)


def llama_config(**kw):
    from transformers import LlamaConfig

    return LlamaConfig(**TINY, num_key_value_heads=1, **kw)


def decoder_configs():
    from transformers import GPT2Config, MistralConfig, Qwen2Config

    return {
        "llama": llama_config(),
        "qwen2": Qwen2Config(**TINY, num_key_value_heads=1),
        "mistral": MistralConfig(**TINY, num_key_value_heads=1),
        "gpt2": GPT2Config(n_embd=16, n_layer=2, n_head=2, vocab_size=64, n_positions=32),
    }


@pytest.mark.parametrize("name", ["llama", "qwen2", "mistral", "gpt2"])
def test_decoders_default_to_last(name):
    config = decoder_configs()[name]
    # As a GGUF file's config arrives: no `architectures`, and no is_decoder flag set.
    assert not config.architectures and not getattr(config, "is_decoder", False)
    assert is_decoder(config)
    assert default_pooling(None, config) == "last"


def test_encoders_default_to_cls():
    from transformers import BartConfig, BertConfig, RobertaConfig

    bert = BertConfig(**TINY)
    # BERT and RoBERTa also have a causal-LM class, yet AutoModel loads them bidirectional.
    for config in (bert, RobertaConfig(**TINY), BertConfig(**TINY, architectures=["BertForMaskedLM"])):
        assert not is_decoder(config)
        assert default_pooling(None, config) == "cls"
    assert not is_decoder(BartConfig(d_model=16, encoder_layers=1, decoder_layers=1, vocab_size=64))
    # ... unless configured as a decoder: then every position sees only its past.
    assert is_decoder(BertConfig(**TINY, is_decoder=True))


def test_unknown_model_type_falls_back_to_architecture_names():
    from transformers import PretrainedConfig

    assert is_decoder(PretrainedConfig(architectures=["MyOwnForCausalLM"]))
    assert is_decoder(PretrainedConfig(architectures=["MyOwnLMHeadModel"]))
    assert not is_decoder(PretrainedConfig(architectures=["MyOwnModel"]))
    assert not is_decoder(PretrainedConfig())


@pytest.mark.parametrize(("settings", "expected"), [
    ({"pooling_mode_mean_tokens": True, "pooling_mode_cls_token": False}, "mean"),
    ({"pooling_mode_cls_token": True}, "cls"),
    ({"pooling_mode_lasttoken": True}, "last"),
])
def test_sentence_transformers_pooling_wins(tmp_path, settings, expected):
    from transformers import BertConfig

    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps(settings))
    # The folder's own pooling beats the architecture rule, for an encoder and a decoder alike.
    assert default_pooling(tmp_path, BertConfig(**TINY)) == expected
    assert default_pooling(tmp_path, llama_config()) == expected


def test_saved_decoder_folders_load_with_last_pooling(tmp_path):
    from transformers import BertModel, GPT2Model, LlamaModel

    torch.manual_seed(0)
    configs = decoder_configs()
    for name, model in (("llama", LlamaModel(configs["llama"])), ("gpt2", GPT2Model(configs["gpt2"]))):
        model.save_pretrained(tmp_path / name)  # config.json names LlamaModel / GPT2Model: no "CausalLM"
        assert load_classifier(tmp_path / name, 2).pooling == "last", name
    from transformers import BertConfig

    BertModel(BertConfig(**TINY)).save_pretrained(tmp_path / "bert")
    assert load_classifier(tmp_path / "bert", 2).pooling == "cls"
    assert load_classifier(tmp_path / "bert", 2, pooling="mean").pooling == "mean"  # a choice overrides


def test_last_pooling_reads_the_last_real_token_whatever_the_padding():
    from transformers import LlamaModel

    torch.manual_seed(0)
    classifier = SequenceClassifier(LlamaModel(llama_config()), num_labels=3, pooling="last").eval()
    ids = torch.tensor([[5, 6, 7, 8]])
    alone = classifier(ids, torch.ones_like(ids))
    padded = torch.tensor([[5, 6, 7, 8, 0, 0], [9, 10, 11, 0, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 0, 0, 0]])
    together = classifier(padded, mask)
    torch.testing.assert_close(together[0], alone[0], atol=1e-5, rtol=1e-4)
    # A decoder's last real position is the only one that has seen the whole text.
    changed_first = padded.clone()
    changed_first[0, 0] = 20
    assert not torch.allclose(classifier(changed_first, mask)[0], together[0])


def test_inspect_shows_a_decoder_with_its_lm_head_and_last_pooling(tmp_path):
    from transformers import LlamaForCausalLM

    from freezetune.runs.inspect import inspect_model

    torch.manual_seed(0)
    LlamaForCausalLM(llama_config(tie_word_embeddings=True)).save_pretrained(tmp_path)
    out = inspect_model(str(tmp_path), strategy="top_k:1")
    assert "class: LlamaForCausalLM (LM head shown)" in out
    assert "pooling: last (for a classifier head on it)" in out
    assert "blocks: 2" in out and "frozen prefix depth: 1" in out
    assert "pooling: mean" in inspect_model(str(tmp_path), pooling="mean")


@pytest.mark.integration
def test_smollm2_gguf_is_a_decoder_pooled_last():
    """The GGUF config of SmolLM2 carries no `architectures`: the model_type rule must catch it."""
    from transformers import AutoConfig

    from freezetune.io import defaults
    from freezetune.runs.inspect import inspect_model

    folder, gguf = defaults.smollm2_gguf()
    config = AutoConfig.from_pretrained(folder, gguf_file=gguf)
    assert config.model_type == "llama" and not config.architectures
    assert default_pooling(folder, config) == "last"
    out = inspect_model(folder, gguf_file=gguf)
    assert "pooling: last" in out and "blocks: 30" in out
