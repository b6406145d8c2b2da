"""FreezetuneCallback: `auto` scored on the trainer's own training set, the first-step audit, TRL's SFTTrainer."""

from __future__ import annotations

import datasets
import pytest
import torch
from test_trainer_callback import STEPS, TrainableSets, rows, trainer_args

import freezetune
from conftest import tiny_decoder, tiny_tokenizer
from freezetune.core.errors import FreezetuneError
from freezetune.core.layout import LayerMap
from freezetune.integrations.trainer_callback import FreezetuneCallback

transformers = pytest.importorskip("transformers")


def trainer_for(lm, tmp_path, callbacks, **overrides):
    return transformers.Trainer(lm, trainer_args(tmp_path, **overrides),
                                   train_dataset=datasets.Dataset.from_dict(rows()),
                                data_collator=transformers.default_data_collator, callbacks=callbacks)


def test_auto_scores_a_seeded_sample_of_the_training_set_before_the_first_step(tmp_path):
    lm = tiny_decoder()
    callback, recorder = FreezetuneCallback("auto:budget=2", samples=16), TrainableSets()
    trainer = trainer_for(lm, tmp_path, [callback, recorder])
    trainer.train()
    chosen = callback.schedule.plan
    # the same rows, collated the same way (8 a batch), give apply() the same choice
    same = freezetune.apply(tiny_decoder(), "auto:budget=2", sample=datasets.Dataset.from_dict(rows()), samples=16,
                            batch_size=8)
    assert chosen == same
    expected = sorted(chosen.trainable_names(LayerMap.from_model(lm)))
    assert recorder.per_step == [expected] * STEPS
    in_optimizer = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert sorted(n for n, p in lm.named_parameters() if id(p) in in_optimizer) == expected
    assert "gradient" in callback.selection


def test_the_audit_stops_reentrant_checkpointing_with_frozen_embeddings(tmp_path):
    lm = tiny_decoder()
    lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
    lm.disable_input_require_grads()
    trainer = trainer_for(lm, tmp_path, [FreezetuneCallback("top_k:2")])
    with pytest.raises(FreezetuneError) as error:
        trainer.train()
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("training audit, first step of plan 'top_k:2': 18 tensor(s) the plan trains got no "
                              "gradient: model.layers.2.self_attn.q_proj.weight")
    assert "likely reentrant gradient checkpointing with frozen embeddings" in message


def test_the_audit_waits_for_a_step_that_moves_weights(tmp_path):
    """A linear warm-up starts at rate 0: the first step moves nothing, the audit checks the second."""
    lm = tiny_decoder()
    initial = {n: p.detach().clone() for n, p in lm.named_parameters()}
    callback = FreezetuneCallback("top_k:1")
    trainer_for(lm, tmp_path, [callback], warmup_steps=2).train()
    assert not callback.audit_first_step  # the audit ran, and passed
    moved = [n for n, p in lm.named_parameters() if not torch.equal(p.detach(), initial[n])]
    assert sorted({n.split(".")[2] for n in moved if n.startswith("model.layers.")}) == ["3"]


def test_a_callback_added_after_the_optimizer_exists_is_refused_in_one_line(tmp_path):
    lm = tiny_decoder()
    freezetune.apply(lm, "head_only")  # the optimizer the Trainer makes holds the head alone
    trainer = trainer_for(lm, tmp_path, [])
    trainer.create_optimizer()
    trainer.add_callback(FreezetuneCallback("top_k:1"))
    with pytest.raises(FreezetuneError, match=r"the Trainer's optimizer lacks 9 tensor\(s\) the plan trains "
                                              r"\(model.layers.3.self_attn.q_proj.weight, ...\): pass "
                                              r"FreezetuneCallback in Trainer\(callbacks=\[...\]\)"):
        trainer.train()


def test_sft_trainer_runs_a_schedule(tmp_path):
    trl = pytest.importorskip("trl")
    tokenizer = tiny_tokenizer()
    lm = tiny_decoder(vocab_size=len(tokenizer))
    texts = [{"prompt": "review the film was very great . sentiment ?", "completion": " positive"},
             {"prompt": "review the film was very dull . sentiment ?", "completion": " negative"}] * 8
    callback, recorder = FreezetuneCallback("lift:steps=1"), TrainableSets()
    config = trl.SFTConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=4, report_to=[],
                           save_strategy="no", use_cpu=True, disable_tqdm=True, learning_rate=1e-3, max_grad_norm=0)
    trainer = trl.SFTTrainer(model=lm, args=config, train_dataset=datasets.Dataset.from_list(texts),
                             processing_class=tokenizer, callbacks=[callback, recorder])
    initial = {n: p.detach().clone() for n, p in lm.named_parameters()}
    trainer.train()
    blocks = [sorted({n.split(".")[2] for n in names if n.startswith("model.layers.")}) for names in recorder.per_step]
    assert blocks == [["3"], ["2"], ["1"], ["0"]]  # top-down LIFT, one block a step
    assert recorder.frozen_moved == []
    params = dict(lm.named_parameters())
    assert torch.equal(params["model.embed_tokens.weight"].detach(), initial["model.embed_tokens.weight"])
