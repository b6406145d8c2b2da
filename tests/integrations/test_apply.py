"""freezetune.apply: any spec on a plain Hugging Face model or freezetune's own, exact trainable sets."""

from __future__ import annotations

import logging

import pytest
import torch

import freezetune
from conftest import tiny_bert, tiny_decoder, toy_batches
from freezetune.core.errors import FreezetuneError
from freezetune.core.layout import LayerMap

BLOCK = 2336  # one block of the tiny Llama: attention 768, MLP 1536, two norms of 16


def trainable(model) -> dict[str, int]:
    return {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}


def lm_dataset(rows: int = 24, length: int = 8):
    import datasets

    ids = torch.randint(5, 40, (rows, length), generator=torch.Generator().manual_seed(0))
    return datasets.Dataset.from_dict({"input_ids": ids.tolist(), "attention_mask": [[1] * length] * rows})


def test_apply_freezes_a_plain_model_where_the_spec_says_and_logs_the_table(caplog):
    lm = tiny_decoder()
    with caplog.at_level(logging.INFO, logger="freezetune"):
        plan = freezetune.apply(lm, "layers:0,2")
    assert plan.blocks == (0, 2) and plan.spec == "layers:0,2"
    names = trainable(lm)
    assert sorted({n.split(".")[2] for n in names if n.startswith("model.layers.")}) == ["0", "2"]
    assert sum(names.values()) == 2 * BLOCK + 16  # two blocks and the final norm (lm_head is the tied embedding)
    assert "plan: layers:0,2" in caplog.text and "block.2" in caplog.text


def test_apply_adds_lora_in_place_on_the_chosen_blocks():
    lm = tiny_decoder()
    freezetune.apply(lm, "lora:r=4:blocks=3")
    names = sorted(trainable(lm))
    assert names == ["model.layers.3.self_attn.q_proj.lora_A.default.weight",
                     "model.layers.3.self_attn.q_proj.lora_B.default.weight",
                     "model.layers.3.self_attn.v_proj.lora_A.default.weight",
                     "model.layers.3.self_attn.v_proj.lora_B.default.weight", "model.norm.weight"]


def test_apply_refuses_a_schedule_in_one_line_pointing_to_the_callback():
    with pytest.raises(FreezetuneError) as error:
        freezetune.apply(tiny_decoder(), "lisa:gamma=2")
    assert str(error.value) == ("lisa is a schedule (its plan changes while training), which one apply() cannot set: "
                                "use freezetune.FreezetuneCallback('lisa') with transformers.Trainer")


def test_auto_scores_the_sample_it_is_given(caplog):
    lm = tiny_decoder()
    with caplog.at_level(logging.INFO, logger="freezetune"):
        plan = freezetune.apply(lm, "auto:budget=2", sample=lm_dataset())
    assert len(plan.blocks) <= 2 and plan.lora is None and plan.spec == "auto:budget=2"
    assert "gradient" in caplog.text  # the scorer's explanation of the choice is logged
    expected = plan.trainable_names(LayerMap.from_model(lm))
    assert set(trainable(lm)) == expected  # requires_grad follows the chosen plan exactly
    again = freezetune.apply(tiny_decoder(), "auto:budget=2", sample=lm_dataset())
    assert again == plan  # a seeded sample: the same choice


def test_auto_scores_a_plain_sequence_classifier_through_its_logits():
    from transformers import BertForSequenceClassification

    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_bert().config.__class__(**{**tiny_bert().config.to_dict(),
                                                                          "num_labels": 3}))
    plan = freezetune.apply(model, "auto:budget=1", sample=toy_batches(24))
    assert len(plan.blocks) <= 1
    names = set(trainable(model))
    assert names == plan.trainable_names(LayerMap.from_model(model))
    assert {"classifier.weight", "classifier.bias", "bert.pooler.dense.weight"} <= names  # the head trains


def test_auto_without_a_sample_is_one_line():
    with pytest.raises(FreezetuneError, match=r"^auto scores the model on labelled data: pass sample="):
        freezetune.apply(tiny_decoder(), "auto")
