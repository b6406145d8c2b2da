"""Block scorers on causal language models (tiny GPT-2, Llama, Qwen2), and every scorer leaving
every model exactly as it found it.

On a decoder ``semantic`` reads each block boundary through the logit lens (the model's final norm
and lm_head), ``gradient`` / ``snr`` / ``fisher`` differentiate the task's next-token loss, and
``variability`` (classes needed) refuses in one line.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from conftest import tiny_classifier, tiny_gpt2, tiny_llama, toy_batches
from freezetune.core.causal_lm import CausalLM
from freezetune.core.errors import FreezetuneError
from freezetune.core.layout import LayerMap
from freezetune.core.plan import Plan
from freezetune.scoring.cost import full_step_seconds
from freezetune.scoring.lens import readout
from freezetune.scoring.resolve import resolve_strategy
from freezetune.scoring.sample import sample_batches
from freezetune.scoring.scorers import SCORERS, score
from freezetune.strategies.registry import resolve
from freezetune.tasks.causal_lm import IGNORE, CausalLanguageModeling
from freezetune.tasks.classification import SequenceClassification

VOCAB = 50
LM = CausalLanguageModeling()


def tiny_qwen2(tie: bool = False):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(
        hidden_size=16, num_hidden_layers=3, num_attention_heads=2, num_key_value_heads=1,
        intermediate_size=32, vocab_size=VOCAB, tie_word_embeddings=tie, max_position_embeddings=64,
    )
    return Qwen2ForCausalLM(config)


BUILDERS = {
    "gpt2": tiny_gpt2,
    "llama": tiny_llama,
    "llama_untied": lambda: tiny_llama(tie=False),
    "qwen2": tiny_qwen2,
}
# The final norm each architecture applies before lm_head, named by hand (the scorer finds it structurally).
FINAL_NORM = {"gpt2": "backbone.transformer.ln_f", "llama": "backbone.model.norm",
              "llama_untied": "backbone.model.norm", "qwen2": "backbone.model.norm"}


def decoder(arch: str) -> CausalLM:
    """A tiny causal LM whose logit lens is far from uniform (embeddings scaled up), in eval mode."""
    model = CausalLM(BUILDERS[arch]())
    embeddings, lm_head = model.backbone.get_input_embeddings().weight, model.backbone.get_output_embeddings().weight
    with torch.no_grad():
        embeddings.mul_(25)
        if lm_head is not embeddings:
            lm_head.mul_(25)
    return model.eval()


def lm_batches(n: int = 24, seq: int = 12, seed: int = 0, batch: int = 8) -> list[dict]:
    """Right-padded prompt/response rows: labels are -100 on the prompt (first 4 tokens) and padding."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (n, seq), generator=g)
    lengths = torch.randint(seq // 2 + 1, seq + 1, (n,), generator=g)
    mask = (torch.arange(seq)[None, :] < lengths[:, None]).long()
    ids = ids * mask
    labels = ids.masked_fill(mask == 0, IGNORE)
    labels[:, :4] = IGNORE
    return [{"input_ids": ids[i:i + batch], "attention_mask": mask[i:i + batch], "labels": labels[i:i + batch]}
            for i in range(0, n, batch)]


def lm_dataset(n: int = 40, seed: int = 0):
    """A tokenized causal LM data set as io/lm_data.py makes it: unpadded lists, prompt labels -100."""
    import datasets

    g = torch.Generator().manual_seed(seed)
    rows = {"input_ids": [], "attention_mask": [], "labels": []}
    for _ in range(n):
        prompt, response = int(torch.randint(2, 6, (1,), generator=g)), int(torch.randint(2, 8, (1,), generator=g))
        ids = torch.randint(3, VOCAB, (prompt + response,), generator=g).tolist()
        rows["input_ids"].append(ids)
        rows["attention_mask"].append([1] * len(ids))
        rows["labels"].append([IGNORE] * prompt + ids[prompt:])
    return datasets.Dataset.from_dict(rows)


# ---------------------------------------------------------------------- leaving the model as found
HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")


def snapshot(model):
    return {
        "params": {n: p.detach().clone() for n, p in model.named_parameters()},
        "buffers": {n: b.detach().clone() for n, b in model.named_buffers()},
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "modes": {n: m.training for n, m in model.named_modules()},
        "grads": {n: p.grad for n, p in model.named_parameters()},
        "hooks": {n: {d: dict(getattr(m, d)) for d in HOOK_DICTS} for n, m in model.named_modules()},
    }


def assert_as_found(model, before):
    after = snapshot(model)
    for kind in ("params", "buffers"):
        assert before[kind].keys() == after[kind].keys()
        for name, value in before[kind].items():
            assert torch.equal(value, after[kind][name]), name  # bit-identical
    assert before["requires_grad"] == after["requires_grad"]
    assert before["modes"] == after["modes"]
    for name, grad in before["grads"].items():
        assert after["grads"][name] is grad, name  # no .grad left behind; a .grad that was set is the same tensor
    assert before["hooks"] == after["hooks"]  # no leftover hook anywhere


def mixed_state(model):
    """Partly frozen, mixed train/eval modes, one .grad set: a state a scorer could easily disturb."""
    layers = LayerMap.from_model(model)
    resolve("top_k:1", layers).apply(model, layers)
    model.train()
    layers.blocks[0].eval()
    head = layers.parameters("head")[0][1]
    head.grad = torch.full_like(head, 0.5)
    return model


def causal_lm_and_sample():
    return mixed_state(decoder("llama")), lm_batches(), LM


def classifier_and_sample():
    return mixed_state(tiny_classifier(num_blocks=4)), toy_batches(), SequenceClassification()


@pytest.mark.parametrize("kind", ["classifier", "causal_lm"])
@pytest.mark.parametrize("name", list(SCORERS))
def test_every_scorer_leaves_the_model_as_it_found_it(name, kind):
    model, batches, task = (classifier_and_sample if kind == "classifier" else causal_lm_and_sample)()
    before = snapshot(model)
    if kind == "causal_lm" and name == "variability":
        with pytest.raises(FreezetuneError, match="causal LM"):
            score(model, batches, name, task=task)
    else:
        score(model, batches, name, task=task)
    assert_as_found(model, before)


@pytest.mark.parametrize("name", ["semantic", "gradient", "snr", "fisher"])
def test_a_scorer_failing_half_way_on_a_causal_lm_leaves_it_as_found(name):
    model, batches, task = causal_lm_and_sample()
    broken = [*batches[:2], {**batches[2], "labels": batches[2]["labels"][:, :5]}]  # labels not one per token
    before = snapshot(model)
    with pytest.raises(FreezetuneError, match="one per token"):
        score(model, broken, name, task=task)
    assert_as_found(model, before)


# ---------------------------------------------------------------------- every scorer on every decoder
@pytest.mark.parametrize("arch", list(BUILDERS))
@pytest.mark.parametrize("name", list(SCORERS))
def test_every_scorer_runs_on_each_decoder(name, arch):
    model = decoder(arch)
    layers = LayerMap.from_model(model)
    if name == "variability":
        with pytest.raises(FreezetuneError, match="variability measures how pooled states separate classes.*"
                                                  "use semantic \\(logit lens\\) or gradient, snr, fisher"):
            score(model, lm_batches(), name, task=LM)
        return
    result = score(model, lm_batches(), name, task=LM)
    assert result.scorer == name and len(result.scores) == len(result.raw) == layers.num_blocks
    assert all(math.isfinite(v) and -1 <= v <= 1 for v in result.scores)
    assert all(math.isfinite(v) for v in result.raw)
    assert max(abs(v) for v in result.scores) == pytest.approx(1.0)
    assert result.samples == 24 and result.batches == 3
    assert score(model, lm_batches(), name).scores == result.scores  # a CausalLM's own task by default
    if name != "semantic":
        assert set(result.tensor_scores) == {n for n, _ in model.named_parameters()}


# ---------------------------------------------------------------------- semantic: the logit lens
def hand_lens_ce(model, arch, batches, boundary):
    """The lens cross-entropy at ``boundary``, from output_hidden_states and the norm named by hand."""
    norm = model.get_submodule(FINAL_NORM[arch])
    lm_head = model.backbone.lm_head
    total, tokens = 0.0, 0
    with torch.no_grad():
        for batch in batches:
            out = model.backbone(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                 output_hidden_states=True, use_cache=False)
            hidden = out.hidden_states[boundary]  # before the final norm for every boundary below L
            logits = lm_head(norm(hidden))[:, :-1]
            labels = batch["labels"][:, 1:]
            total += float(F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE,
                                           reduction="sum"))
            tokens += int((labels != IGNORE).sum())
    return total / tokens


@pytest.mark.parametrize("arch", list(BUILDERS))
def test_semantic_logit_lens_matches_a_hand_computation(arch):
    model, batches = decoder(arch), lm_batches()
    result = score(model, batches, "semantic", task=LM)
    trace = result.boundary_trace
    blocks = LayerMap.from_model(model).num_blocks
    assert len(trace) == blocks + 1 and result.details["readout"] == "logit_lens"
    for boundary in (0, 1, blocks - 1):
        assert trace[boundary] == pytest.approx(hand_lens_ce(model, arch, batches, boundary), rel=1e-5)
    # at boundary L the lens is the model's own head: D_L is the model's loss over the target tokens
    tokens = sum(int((b["labels"][:, 1:] != IGNORE).sum()) for b in batches)
    with torch.no_grad():
        loss = sum(float(LM.loss(model(b["input_ids"], b["attention_mask"]), b["labels"]))
                   * int((b["labels"][:, 1:] != IGNORE).sum()) for b in batches) / tokens
    assert trace[-1] == pytest.approx(loss, rel=1e-5) and result.details["model_loss"] == pytest.approx(loss, rel=1e-5)
    assert result.details["target_tokens"] == tokens
    assert len(set(round(v, 3) for v in trace)) > 1  # a lens far from uniform: the check above means something
    # the same block scores as the encoder form: each block's shortfall against an equal share
    n = len(trace) - 1
    shortfall = [(trace[b + 1] - trace[b]) + (trace[0] - trace[n]) / n for b in range(n)]
    assert result.raw == pytest.approx(shortfall, abs=1e-12)
    assert result.details["final_norm"] == FINAL_NORM[arch]


def copy_batches(n: int = 32, pairs: int = 5, seed: int = 0) -> list[dict]:
    """Every token appears twice in a row; only the repeat is a target, so the current token predicts it."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (n, pairs), generator=g).repeat_interleave(2, dim=1)
    labels = torch.full_like(ids, IGNORE)
    labels[:, 1::2] = ids[:, 1::2]
    mask = torch.ones_like(ids)
    return [{"input_ids": ids[i:i + 8], "attention_mask": mask[i:i + 8], "labels": labels[i:i + 8]}
            for i in range(0, n, 8)]


def test_semantic_points_at_the_block_that_destroys_what_the_lens_reads():
    """Tied embeddings make the lens read the current token at every boundary; drowning block 1's
    output in noise destroys that from boundary 2 on: block 1 falls furthest behind its share."""
    model = decoder("llama")

    def drown(module, args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        noisy = hidden + 100 * torch.randn(hidden.shape, generator=torch.Generator().manual_seed(3))
        return (noisy, *output[1:]) if isinstance(output, tuple) else noisy

    model.backbone.model.layers[1].register_forward_hook(drown)
    result = score(model, copy_batches(), "semantic", task=LM)
    trace = result.boundary_trace
    assert trace[0] < 0.5 and trace[1] < 0.5 and trace[2] > 2  # the copy is read, then lost
    assert max(range(4), key=lambda b: result.scores[b]) == 1 and result.scores[1] == pytest.approx(1.0)
    assert result.details["lens_accuracy"][0] > 0.9


def test_the_readout_is_found_structurally():
    plain = decoder("llama")
    plain.backbone.model.norm = torch.nn.Identity()  # no final norm: lm_head alone reads the state
    layers = LayerMap.from_model(plain)
    reader = readout(plain, layers)
    assert reader.norm is None and reader.lm_head is plain.backbone.lm_head
    result = score(plain, lm_batches(), "semantic", task=LM)
    assert result.boundary_trace[-1] == pytest.approx(result.details["model_loss"], rel=1e-5)
    twice = decoder("gpt2")
    twice.backbone.transformer.ln_extra = torch.nn.LayerNorm(16)  # registered after the blocks too
    with pytest.raises(FreezetuneError, match="cannot tell the final norm among .*ln_f.*ln_extra"):
        readout(twice, LayerMap.from_model(twice))


# ---------------------------------------------------------------------- gradient scorers: the task's loss
def test_gradient_scorers_differentiate_the_next_token_loss_on_target_tokens():
    model, batches = decoder("qwen2"), lm_batches()
    layers = LayerMap.from_model(model)
    result = score(model, batches, "gradient", task=LM, max_batches=1)
    params = dict(model.named_parameters())
    block = [params[n] for n in layers.units["block.1"]]
    for p in model.parameters():
        p.requires_grad_(True)
    loss = LM.loss(model(batches[0]["input_ids"], batches[0]["attention_mask"]), batches[0]["labels"])
    grads = torch.autograd.grad(loss, block)
    expected = math.sqrt(sum(float(g.double().pow(2).sum()) for g in grads)) / math.sqrt(
        sum(float(p.detach().double().pow(2).sum()) for p in block))
    assert result.raw[1] == pytest.approx(expected, rel=1e-5)


def test_batches_without_target_tokens_are_skipped_and_an_empty_sample_is_refused():
    model, batches = decoder("gpt2"), lm_batches()
    no_targets = {**batches[0], "labels": torch.full_like(batches[0]["labels"], IGNORE)}
    with_gap = score(model, [no_targets, *batches[1:]], "fisher", task=LM)
    assert with_gap.batches == 2 and with_gap.samples == 16
    assert score(model, [no_targets, *batches[1:]], "semantic", task=LM).details["target_tokens"] == sum(
        int((b["labels"][:, 1:] != IGNORE).sum()) for b in batches[1:])
    for name in ("semantic", "gradient"):
        with pytest.raises(FreezetuneError, match="no target token"):
            score(model, [no_targets], name, task=LM)


def test_a_task_that_cannot_read_the_model_is_refused():
    with pytest.raises(FreezetuneError, match="causal LM with no classification head"):
        score(decoder("llama"), lm_batches(), "gradient", task=SequenceClassification())
    with pytest.raises(FreezetuneError, match="needs a causal LM"):
        score(tiny_classifier(), toy_batches(), "semantic", task=LM)


def test_the_cost_estimate_times_the_causal_lm_loss():
    model = mixed_state(decoder("llama"))
    before = snapshot(model)
    assert full_step_seconds(model, lm_batches(), steps=1) > 0
    assert_as_found(model, before)


# ---------------------------------------------------------------------- resolve: auto on a causal LM
@pytest.mark.parametrize("spec", ["auto", "auto:semantic", "auto:semantic:budget=2", "auto:fisher:budget=0.3",
                                  "auto:gradient:granularity=tensor:budget=3", "auto_rgn"])
def test_resolve_auto_on_a_causal_lm(spec):
    model = decoder("llama")
    data = lm_dataset()
    drawn = []

    def sample():  # as runs/run.py's resolve_for_run draws it
        drawn.append(sample_batches(data, seed=0, pad_token_id=0))
        return drawn[-1]

    before = snapshot(model)
    resolution = resolve_strategy(spec, model, task=LM, sample=sample)
    assert_as_found(model, before)
    (batches,) = drawn
    assert all(b["labels"].shape == b["input_ids"].shape for b in batches)  # per-token labels survived collation
    assert (batches[0]["labels"] == IGNORE).any() and (batches[0]["labels"] != IGNORE).any()
    plan = resolution.strategy
    layers = LayerMap.from_model(model)
    (selection,) = resolution.selections
    # the cheapest-within-noise objective may freeze every block when the sample (no validation set: its own
    # rows set the noise) cannot tell any plan apart; then it says so
    told_apart = "cannot separate" not in selection["explanation"]
    assert isinstance(plan, Plan) and (plan.blocks or not told_apart)
    assert all(0 <= b < layers.num_blocks for b in plan.blocks)
    scores = selection["scores"]
    assert scores.samples == len(data) and len(scores.scores) == layers.num_blocks
    assert scores.scorer == ("semantic" if "semantic" in spec else "fisher" if "fisher" in spec else "gradient")
    if spec == "auto:semantic:budget=2":
        assert len(plan.blocks) <= 2
    assert plan.apply(model, layers) > 0
