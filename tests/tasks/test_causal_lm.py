"""Causal language modelling: the loss, the metrics, and every plan on tiny GPT-2, Llama and Qwen2."""

import math

import pytest
import torch

from conftest import StopAt, sentiment_chat_rows, tiny_decoder, tiny_tokenizer
from freezetune.core.causal_lm import CausalLM
from freezetune.core.layout import LayerMap
from freezetune.io.lm_data import PromptFormat, encode
from freezetune.runs.generate import generate
from freezetune.tasks.causal_lm import IGNORE, CausalLanguageModeling
from freezetune.training.finetuner import Finetuner
from freezetune.training.resume import load_state
from tolerances import trained_atol

TASK = CausalLanguageModeling.for_data(prompt_response=True)


def chat_data(n=48, chat=True, max_length=32):
    import pandas as pd

    fmt = PromptFormat.choose(tiny_tokenizer(chat), "auto" if chat else "none")
    data, truncated, dropped = encode(pd.DataFrame(sentiment_chat_rows(n)), ("prompt", "response"), fmt, max_length,
                                      False, "train")
    assert truncated == dropped == 0
    return data, fmt


def test_loss_scores_only_target_tokens_shifted_by_one():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    labels = torch.tensor([[IGNORE, IGNORE, 3, 4, IGNORE], [IGNORE, 1, 2, 6, 0]])
    expected = []
    for b in range(2):
        for t in range(1, 5):  # position t-1 predicts token t
            if labels[b, t] != IGNORE:
                expected.append(-torch.log_softmax(logits[b, t - 1], -1)[labels[b, t]])
    assert torch.allclose(TASK.loss(logits, labels), torch.stack(expected).mean())
    metrics = TASK.metrics([TASK.keep(logits, labels)])
    assert metrics["target_tokens"] == 6 and metrics["examples"] == 2
    assert metrics["loss"] == pytest.approx(torch.stack(expected).mean().item(), rel=1e-6)
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["loss"]))


def test_metrics_pool_tokens_over_batches_not_batch_means():
    torch.manual_seed(1)
    logits = torch.randn(3, 4, 5)
    labels = torch.tensor([[IGNORE, 1, 2, 3], [IGNORE, IGNORE, IGNORE, 4], [IGNORE, 0, 0, 0]])
    whole = TASK.metrics([TASK.keep(logits, labels)])
    split = TASK.metrics([TASK.keep(logits[:1], labels[:1]), TASK.keep(logits[1:], labels[1:])])
    assert whole["loss"] == pytest.approx(split["loss"], rel=1e-9)
    assert whole["token_accuracy"] == split["token_accuracy"]


def test_teacher_forced_exact_match_equals_greedy_generation():
    data, fmt = chat_data()
    model = CausalLM(tiny_decoder("llama", vocab_size=len(fmt.tokenizer)))
    tuner = Finetuner(model, "full", task=TASK, epochs=10, batch_size=8, lr=1e-2, progress=False, pad_token_id=1)
    tuner.fit(data)
    exact = torch.cat([k["exact"] for k in tuner.collect(data)]).tolist()
    rows = sentiment_chat_rows(48)
    # Room for more than the answer: a continuation that does not stop at EOS keeps extra tokens and fails.
    generated = generate(tuner.model, fmt, [r["prompt"] for r in rows], max_new_tokens=4, max_length=32,
                         batch_size=5)  # batches of mixed lengths: left padding must not change a row
    greedy = [new == fmt.tokenizer(r["response"], add_special_tokens=False)["input_ids"]
              for r, new in zip(rows, generated)]
    assert greedy == exact  # example by example, not just on average
    assert 0 < sum(exact) < len(exact)  # both outcomes occur, so the comparison can fail


STRATEGIES = ["full", "head_only", "lower_half", "alternate", "top_k:1", "layers:0,2", "attention", "norm", "bias",
              "lora:r=4", "lora:r=4:blocks=1,2"]


@pytest.mark.parametrize("arch", ["gpt2", "llama", "qwen2"])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_static_strategy_trains_a_decoder_and_leaves_the_rest_bit_identical(arch, strategy):
    data, fmt = chat_data(24)
    model = CausalLM(tiny_decoder(arch, vocab_size=len(fmt.tokenizer)))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    tuner = Finetuner(model, strategy, task=TASK, epochs=1, batch_size=8, lr=1e-2, progress=False, pad_token_id=1)
    layers, plan = tuner.layers, tuner.plan
    expected = sum(p.numel() for n, p in tuner.model.named_parameters() if p.requires_grad)
    result = tuner.fit(data, data)
    assert result.costs["trainable_params"] == expected > 0
    params = dict(tuner.model.named_parameters())
    trained = set(result.trained_names)
    for name, value in before.items():
        if name in params and name not in trained:
            assert torch.equal(params[name], value), f"{strategy} on {arch} changed frozen {name}"
    assert any(not torch.equal(params[n], before[n]) for n in trained if n in before) or plan.lora is not None
    if strategy == "top_k:1":  # exactly the last block plus the final norm (the tied lm_head stays frozen)
        last = layers.units[f"block.{layers.num_blocks - 1}"]
        assert expected == sum(params[n].numel() for n in last + layers.units["head"])
    assert math.isfinite(result.best_metrics["loss"])


@pytest.mark.parametrize("arch", ["gpt2", "llama", "qwen2"])
@pytest.mark.parametrize("strategy", ["top_k:1", "lora:r=4:blocks=1,2"])
def test_the_frozen_prefix_cache_changes_nothing_on_decoders(arch, strategy):
    """Causal masks and rotary positions run through the model's own forward from the cached states."""
    data, fmt = chat_data(24)
    weights = []
    for cache in ("on", "off"):
        model = CausalLM(tiny_decoder(arch, vocab_size=len(fmt.tokenizer)))
        tuner = Finetuner(model, strategy, task=TASK, epochs=3, batch_size=8, lr=1e-2, progress=False,
                          pad_token_id=1, cache=cache)
        tuner.fit(data, data)
        assert tuner.cache_status.startswith("on" if cache == "on" else "off")
        weights.append({n: p.detach().clone() for n, p in tuner.model.named_parameters()})
    # 3 epochs of 3 steps: rounding only, the cached states feed the same arithmetic
    assert all(torch.allclose(weights[0][n], weights[1][n], atol=trained_atol(9), rtol=0) for n in weights[0])


def test_training_the_tied_embedding_turns_the_cache_off_and_says_so():
    data, fmt = chat_data(16)
    model = CausalLM(tiny_decoder("llama", vocab_size=len(fmt.tokenizer)))
    layers = LayerMap.from_model(model)
    assert layers.tied == {"backbone.lm_head.weight": "backbone.model.embed_tokens.weight"}
    tuner = Finetuner(model, "top_k:1:embeddings=true", task=TASK, epochs=2, batch_size=8, progress=False,
                      pad_token_id=1, cache="auto")
    tuner.fit(data)
    assert tuner.cache_status.startswith("off") and "frozen" in tuner.cache_status


@pytest.mark.parametrize("strategy", ["top_k:2", "lora:r=4", "lift:steps=2"])
def test_decoder_resume_is_bit_identical(tmp_path, strategy):
    data, fmt = chat_data(40)

    def train(folder, stop_at=None, resume=False):
        model = CausalLM(tiny_decoder("llama", vocab_size=len(fmt.tokenizer)))
        tuner = Finetuner(model, strategy, task=TASK, epochs=2, batch_size=8, lr=1e-2, progress=False,
                          pad_token_id=1, save_every=2, state_dir=str(folder), state_key=strategy,
                          callbacks=[StopAt(stop_at)] if stop_at else [])
        tuner.fit(data, data, resume=load_state(folder) if resume else None)
        return {n: p.detach().clone() for n, p in tuner.model.named_parameters()}

    reference = train(tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path / "b", stop_at=3)
    resumed = train(tmp_path / "b", resume=True)
    assert all(torch.equal(reference[n], resumed[n]) for n in reference)


@pytest.mark.parametrize("arch", ["gpt2", "llama", "qwen2"])
def test_logits_at_target_positions_only_equal_the_full_logits_there(arch):
    data, fmt = chat_data(8)
    model = CausalLM(tiny_decoder(arch, vocab_size=len(fmt.tokenizer))).eval()
    from freezetune.io.loader import collate

    inputs, labels = TASK.split(collate([data[i] for i in range(8)], pad_token_id=1))
    packed = model(**inputs)
    full = model(**{k: v for k, v in inputs.items() if k != "logits_at"})
    assert packed.shape == (int(inputs["logits_at"].sum()), len(fmt.tokenizer))
    assert torch.allclose(packed, full[:, :-1][inputs["logits_at"]], atol=1e-5)
    assert torch.allclose(TASK.loss(packed, labels), TASK.loss(full, labels), atol=1e-6)
    a, b = TASK.keep(packed, labels), TASK.keep(full, labels)
    assert all(torch.allclose(a[k].double(), b[k].double(), atol=1e-5) for k in a)


def test_auto_lora_puts_adapters_on_the_blocks_the_scorer_chose():
    from freezetune.scoring.resolve import resolve_strategy
    from freezetune.scoring.sample import sample_batches

    data, fmt = chat_data(24)
    model = CausalLM(tiny_decoder("llama", vocab_size=len(fmt.tokenizer)))
    sample = lambda: sample_batches(data, seed=0, pad_token_id=1)  # noqa: E731
    chosen = resolve_strategy("auto:budget=2", model, task=TASK, sample=sample).strategy
    adapted = resolve_strategy("auto:budget=2:lora=4", model, task=TASK, sample=sample)
    plan = adapted.strategy
    assert plan.lora.r == 4 and plan.lora.blocks == chosen.blocks and plan.blocks == ()
    assert "LoRA r=4 on the chosen blocks" in adapted.selections[-1]["explanation"]
    tuner = Finetuner(model, plan, task=TASK, epochs=1, batch_size=8, progress=False, pad_token_id=1)
    adapters = {n.split(".")[3] for n, p in tuner.model.named_parameters() if p.requires_grad and "lora_" in n}
    assert adapters == {str(b) for b in chosen.blocks}
    tuner.fit(data)


def test_models_whose_logits_are_more_than_lm_head_keep_the_full_path():
    from transformers import Gemma2Config, Gemma2ForCausalLM

    assert CausalLM(tiny_decoder("llama")).packs_logits
    torch.manual_seed(0)
    gemma = Gemma2ForCausalLM(Gemma2Config(hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                           num_key_value_heads=1, intermediate_size=32, vocab_size=40, head_dim=8,
                                           final_logit_softcapping=3.0))
    model = CausalLM(gemma)
    assert not model.packs_logits
    ids = torch.tensor([[5, 6, 7, 8]])
    at = torch.tensor([[False, True, True]])
    full = model(ids, torch.ones_like(ids))
    assert torch.allclose(model(ids, torch.ones_like(ids), logits_at=at), full[:, :-1][at])
