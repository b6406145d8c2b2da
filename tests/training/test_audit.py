"""The first-step audit of what really trained, each likely cause provoked on purpose."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import tiny_classifier, tiny_decoder, toy_batches
from freezetune.core.causal_lm import CausalLM
from freezetune.core.errors import FreezetuneError
from freezetune.tasks.causal_lm import CausalLanguageModeling
from freezetune.training.finetuner import Finetuner

FAST = dict(epochs=1, batch_size=8, progress=False, cache="off", keep_best=False, warmup_ratio=0.0)


def lm_batches(n: int = 16, length: int = 8) -> list[dict]:
    ids = torch.randint(5, 40, (n, length), generator=torch.Generator().manual_seed(0))
    return [{"input_ids": ids[i:i + 8], "attention_mask": torch.ones_like(ids[i:i + 8]), "labels": ids[i:i + 8]}
            for i in range(0, n, 8)]


def audit_error(model, spec, batches, **options) -> str:
    task = CausalLanguageModeling() if isinstance(model, CausalLM) else None
    tuner = Finetuner(model, spec, task=task, **{**FAST, **options})
    with pytest.raises(FreezetuneError) as error:
        tuner.fit(batches)
    message = str(error.value)
    assert "\n" not in message
    return message


def test_plans_that_train_as_planned_pass_the_audit():
    for spec in ("full", "top_k:2", "bias", "lora:r=4"):
        tuner = Finetuner(tiny_classifier(), spec, lr=1e-3, weight_decay=0.0, **FAST)
        assert tuner.fit(toy_batches(16)).costs["steps"] == 2  # LoRA's A got a zero gradient (B is zero): exempt


def test_reentrant_checkpointing_with_frozen_embeddings_is_named():
    lm = tiny_decoder()
    lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
    lm.disable_input_require_grads()  # as freezetune advises for a frozen prefix; reentrant checkpointing needs it
    message = audit_error(CausalLM(lm), "top_k:2", lm_batches())
    assert message.startswith("training audit, first step of plan 'top_k:2': 18 tensor(s) the plan trains got no "
                              "gradient: backbone.model.layers.2.self_attn.q_proj.weight")
    assert "reentrant gradient checkpointing with frozen embeddings" in message
    assert "use_reentrant': False" in message


def test_a_module_added_after_the_plan_is_named():
    model = tiny_classifier()
    tuner = Finetuner(model, "top_k:1", lr=1e-3, **FAST)
    model.classifier = nn.Sequential(nn.Linear(32, 32), nn.Linear(32, 3))  # replaced after the layer map was built
    with pytest.raises(FreezetuneError) as error:
        tuner.fit(toy_batches(16))
    message = str(error.value)
    assert ("4 tensor(s) outside the layer map got a gradient: classifier.0.weight, classifier.0.bias, "
            "classifier.1.weight and 1 more (a module added after the plan was made") in message


def test_a_tensor_tied_across_units_is_named():
    lm = tiny_decoder(tie=False)
    model = CausalLM(lm)
    tuner = Finetuner(model, "head_only", task=CausalLanguageModeling(), lr=1e-3, **FAST)
    lm.lm_head.weight = lm.model.embed_tokens.weight  # tied after the map saw two tensors
    with pytest.raises(FreezetuneError) as error:
        tuner.fit(lm_batches())
    message = str(error.value)
    assert "tensors tied across units: backbone.model.embed_tokens.weight = backbone.lm_head.weight" in message
    assert "1 tensor(s) the plan trains got no gradient: backbone.lm_head.weight" in message


def test_a_tensor_opened_behind_the_plans_back_is_named():
    model = tiny_classifier()
    tuner = Finetuner(model, "top_k:1", lr=1e-3, **FAST)
    tuner.model.backbone.encoder.layer[2].output.dense.weight.requires_grad_(True)  # opened behind the plan's back
    with pytest.raises(FreezetuneError) as error:
        tuner.fit(toy_batches(16))
    assert ("1 tensor(s) the plan freezes got a gradient: backbone.encoder.layer.2.output.dense.weight "
            "(requires_grad was set after the plan was applied)") in str(error.value)
