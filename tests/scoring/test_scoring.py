"""Per-block scorers and the selection of blocks / tensors from scores and a budget.

Every scorer must return one score per block, give the same numbers twice on the same sample,
and leave the model exactly as it found it (weights, modes, requires_grad, .grad).
"""

import argparse
import json
import math

import pytest
import torch

from conftest import tiny_classifier, tiny_gpt2, toy_batches
from freezetune.cli import score as score_command
from freezetune.core.errors import FreezetuneError
from freezetune.core.layout import LayerMap
from freezetune.core.model import SequenceClassifier
from freezetune.core.plan import Plan
from freezetune.scoring.auto import auto_plan
from freezetune.scoring.forward_scorers import nc1, semantic_deviation
from freezetune.scoring.sample import sample_batches
from freezetune.scoring.scorers import (
    SCORERS,
    LayerScores,
    score,
)
from freezetune.scoring.select import explain, select_blocks, select_tensors
from freezetune.strategies.registry import ResolveContext, resolve

BLOCK = 8544  # parameters of one tiny-BERT block
TOTAL = 39651  # the whole tiny mean-pooled classifier
GRADIENT_SCORERS = ("gradient", "snr", "fisher")


def snapshot(model):
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "modes": {name: m.training for name, m in model.named_modules()},
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "grads": {n: p.grad for n, p in model.named_parameters()},
    }


def assert_untouched(model, before):
    after = snapshot(model)
    assert before["state"].keys() == after["state"].keys()
    for key, value in before["state"].items():
        assert torch.equal(value, after["state"][key]), key  # bit-identical
    assert before["modes"] == after["modes"]
    assert before["requires_grad"] == after["requires_grad"]
    for name, grad in before["grads"].items():
        assert after["grads"][name] is grad, name  # None stays None; a set .grad is the same tensor


def mixed_state_model():
    """A model in a state a scorer could easily disturb: partly frozen, mixed modes, one .grad set."""
    model = tiny_classifier(num_blocks=4)
    layers = LayerMap.from_model(model)
    resolve("top_k:1", layers).apply(model, layers)
    model.train()
    model.backbone.encoder.layer[0].eval()
    model.classifier.weight.grad = torch.full_like(model.classifier.weight, 0.5)
    return model, layers


# ---------------------------------------------------------------------- every scorer
@pytest.mark.parametrize("name", list(SCORERS))
def test_scorer_shape_determinism_and_invariance(name):
    model, layers = mixed_state_model()
    batches = toy_batches()
    before = snapshot(model)
    first = score(model, batches, name)
    assert_untouched(model, before)
    second = score(model, batches, name, layers=layers)
    assert_untouched(model, before)

    assert first.scorer == name
    assert len(first.scores) == len(first.raw) == layers.num_blocks == 4
    assert all(math.isfinite(v) and -1 <= v <= 1 for v in first.scores)
    assert max(abs(v) for v in first.scores) == pytest.approx(1.0)
    assert first.samples == 48 and first.batches == 6 and first.seconds > 0
    assert first.scores == second.scores and first.raw == second.raw  # deterministic
    if name in ("semantic", "variability"):
        assert len(first.boundary_trace) == layers.num_blocks + 1
        assert first.boundary_trace == second.boundary_trace
    else:
        names = {n for n, _ in model.named_parameters()}
        assert set(first.tensor_scores) == names
        assert first.tensor_scores == second.tensor_scores
    json.dumps(first.to_dict())  # JSON-ready
    assert LayerScores.from_dict(first.to_dict()) == first


@pytest.mark.parametrize("name", ["semantic", "gradient"])  # variability shares semantic's forward
def test_scorers_run_on_a_decoder_with_last_token_pooling(name):
    lm = tiny_gpt2()
    torch.manual_seed(0)
    model = SequenceClassifier(lm.transformer, num_labels=3, pooling="last")
    before = snapshot(model)
    result = score(model, toy_batches(vocab=50), name)
    assert len(result.scores) == 3
    assert_untouched(model, before)


def test_sample_is_capped_at_max_samples():
    model = tiny_classifier()
    result = score(model, toy_batches(), "semantic", max_samples=20)
    assert result.samples == 20 and result.batches == 3  # 8 + 8 + the first 4 of the third batch
    assert score(model, toy_batches(), "fisher", max_samples=20).samples == 20


def test_gradient_scorers_batch_limit():
    result = score(tiny_classifier(), toy_batches(), "gradient", max_batches=2)
    assert result.batches == 2 and result.samples == 16


# ---------------------------------------------------------------------- errors
def test_unknown_scorer_lists_the_known_ones():
    with pytest.raises(FreezetuneError, match="unknown scorer 'magic'.*semantic.*variability.*gradient.*snr.*fisher"):
        score(tiny_classifier(), toy_batches(), "magic")


@pytest.mark.parametrize("name", list(SCORERS))
def test_unlabelled_and_empty_samples_are_refused(name):
    model = tiny_classifier()
    before = snapshot(model)
    unlabelled = [{k: v for k, v in b.items() if k != "labels"} for b in toy_batches()]
    with pytest.raises(FreezetuneError, match="labelled"):
        score(model, unlabelled, name)
    with pytest.raises(FreezetuneError, match="empty"):
        score(model, [], name)
    assert_untouched(model, before)  # an error half-way leaves the model as it was too


def test_one_class_and_one_batch_are_refused():
    batches = toy_batches()
    one_class = [{**b, "labels": torch.zeros_like(b["labels"])} for b in batches]
    with pytest.raises(FreezetuneError, match="at least 2 classes"):
        score(tiny_classifier(), one_class, "semantic")
    with pytest.raises(FreezetuneError, match="at least 2 batches"):
        score(tiny_classifier(), batches[:1], "snr")


# ---------------------------------------------------------------------- the measures themselves
def test_semantic_deviation_and_nc1_on_known_geometry():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(60) % 3
    directions = torch.randn(3, 16, generator=g) * 4
    clustered = directions[labels] + torch.randn(60, 16, generator=g) * 0.3
    noise = torch.randn(60, 16, generator=g)
    entropy = math.log(3)
    d_clustered, _, accuracy = semantic_deviation(clustered, labels)
    d_noise, _, _ = semantic_deviation(noise, labels)
    assert d_clustered < 0.1 and accuracy == 1.0
    assert 0.9 * entropy < d_noise <= entropy + 1e-9  # never above the label entropy
    assert nc1(clustered, labels) < 0.05 < 1 < nc1(noise, labels)


def clustered_model_and_batches(scramble_block: int):
    """4 blocks; token embeddings clustered by class; the label is token 0's class; `cls` pooling.

    A forward hook drowns block ``scramble_block``'s output in noise, destroying the label
    information from that boundary on: the forward scorers must point at that block.
    """
    model = tiny_classifier("cls", num_blocks=4)
    vocab = model.backbone.config.vocab_size
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        directions = torch.randn(3, 32, generator=g)
        token_class = torch.arange(vocab) * 3 // vocab
        model.backbone.embeddings.word_embeddings.weight.copy_(
            directions[token_class] + 0.1 * torch.randn(vocab, 32, generator=g)
        )
    batches = toy_batches(n=96, seed=2)
    for batch in batches:
        batch["labels"] = batch["input_ids"][:, 0] * 3 // vocab

    def drown(module, args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        noise = torch.randn(hidden.shape, generator=torch.Generator().manual_seed(3))
        return hidden + 100 * noise

    model.backbone.encoder.layer[scramble_block].register_forward_hook(drown)
    return model, batches


@pytest.mark.parametrize("name", ["semantic", "variability"])
def test_forward_scorers_point_at_the_block_that_destroys_the_label_information(name):
    model, batches = clustered_model_and_batches(scramble_block=2)
    result = score(model, batches, name)
    assert max(range(4), key=lambda b: result.scores[b]) == 2
    assert result.scores[2] == pytest.approx(1.0)
    trace = result.boundary_trace
    assert trace[3] > 2 * trace[2]  # the deviation jumps after block 2
    assert select_blocks(result, LayerMap.from_model(model), budget=1, contiguous=False).blocks == (2,)


def test_gradient_scorers_see_blocks_cut_off_from_the_loss():
    """With the last block's output LayerNorm at weight 0 its output is a constant: no gradient reaches below."""
    model = tiny_classifier(num_blocks=4)
    with torch.no_grad():
        model.backbone.encoder.layer[3].output.LayerNorm.weight.zero_()
    for name in GRADIENT_SCORERS:
        result = score(model, toy_batches(), name)
        assert result.scores[:3] == [0.0, 0.0, 0.0], name
        assert result.scores[3] == 1.0, name


# ---------------------------------------------------------------------- reporting
def test_table_and_plot(tmp_path):
    result = score(tiny_classifier(), toy_batches(), "semantic")
    text = result.table()
    assert "scorer: semantic" in text and "virtual" in text and len(text.splitlines()) >= 7
    path = result.plot(tmp_path / "semantic.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bars_only = LayerScores("gradient", [1.0, -0.5, 0.2])
    assert bars_only.plot(tmp_path / "g.png").stat().st_size > 1000
    noisy = LayerScores("gradient", [1.0, 0.5], raw=[2.0, 1.0], noise_scale=[1234.4, None]).table().splitlines()
    assert noisy[1].split()[-2:] == ["noise", "scale"] and "1,234" in noisy[2] and "no signal" in noisy[3]


# ---------------------------------------------------------------------- selection by budget
def fixed(values, name="fixed"):
    return LayerScores(name, list(values), raw=list(values), samples=10)


def test_count_budget_suffix_versus_top():
    layers = LayerMap.from_model(tiny_classifier(num_blocks=4))
    scores = fixed([1.0, 0.9, 0.1, 0.2])
    suffix = select_blocks(scores, layers, budget=2)
    top = select_blocks(scores, layers, budget=2, contiguous=False)
    assert suffix.blocks == (2, 3) and top.blocks == (0, 1)
    assert suffix.head and not suffix.embeddings
    assert resolve(suffix.spec, layers).blocks == suffix.blocks  # the spec re-runs the choice
    assert select_blocks(scores, layers, budget=4).blocks == (0, 1, 2, 3)


def test_signed_scores_can_stop_short_of_the_budget():
    layers = LayerMap.from_model(tiny_classifier(num_blocks=4))
    scores = fixed([-1.0, 1.0, -0.5, 0.2])
    # suffix totals: d=3 +0.2, d=2 -0.3, d=1 +0.7, d=0 -0.3
    assert select_blocks(scores, layers, budget=4).blocks == (1, 2, 3)
    assert select_blocks(scores, layers, budget=2).blocks == (3,)
    assert select_blocks(scores, layers, budget=4, contiguous=False).blocks == (1, 3)
    # nothing positive: still the single best block, never an empty plan
    assert select_blocks(fixed([-1, -0.2, -0.5, -0.9]), layers, budget=3, contiguous=False).blocks == (1,)


def test_fraction_budget_counts_block_parameters_against_the_model():
    layers = LayerMap.from_model(tiny_classifier(num_blocks=4))
    scores = fixed([0.4, 0.3, 0.2, 1.0])
    for budget, expected in [(0.25, 1), (0.45, 2), (0.65, 3), (0.9, 4)]:
        plan = select_blocks(scores, layers, budget=budget)
        assert len(plan.blocks) == expected
        assert len(plan.blocks) * BLOCK <= budget * TOTAL
        assert plan.blocks == tuple(range(4 - expected, 4))  # a suffix
    assert select_blocks(scores, layers, budget=0.45, contiguous=False).blocks == (0, 3)


@pytest.mark.parametrize("budget, message", [
    (0, "positive"), (-1, "positive"), (0.1, "smaller than one block"), (5, "exceeds"),
    (2.5, "whole number"), (float("nan"), "number"), ("2", "number"),
])
def test_impossible_budgets_are_refused(budget, message):
    layers = LayerMap.from_model(tiny_classifier(num_blocks=4))
    with pytest.raises(FreezetuneError, match=message):
        select_blocks(fixed([1, 1, 1, 1]), layers, budget=budget)


def test_scores_must_match_the_model():
    layers = LayerMap.from_model(tiny_classifier(num_blocks=4))
    with pytest.raises(FreezetuneError, match="3 blocks but the model has 4"):
        select_blocks(fixed([1, 1, 1]), layers, budget=1)


def test_explain_says_why():
    layers = LayerMap.from_model(tiny_classifier(num_blocks=4))
    text = explain(fixed([-1.0, 1.0, -0.5, 0.2], "semantic"), layers, budget=0.9)
    assert "scorer=semantic" in text and "0.9 of the model's 39,651 parameters" in text
    assert "d=1: +0.700" in text and "chosen: blocks 1-3" in text and "frozen prefix depth 1" in text


# ---------------------------------------------------------------------- tensors
def block_owner(layers):
    return {n: i for i in range(layers.num_blocks) for n in layers.units[f"block.{i}"]}


def test_select_tensors_by_count_and_threshold():
    model = tiny_classifier(num_blocks=4)
    layers = LayerMap.from_model(model)
    scores = score(model, toy_batches(), "fisher")
    plan = select_tensors(model, layers, scores, budget=3)
    assert len(plan.tensors) == 3 and plan.head and not plan.embeddings
    owner = block_owner(layers)
    assert all(n in owner for n in plan.tensors)
    assert plan.blocks == tuple(sorted({owner[n] for n in plan.tensors}))
    best = max(owner, key=lambda n: scores.tensor_scores[n])
    assert best in plan.tensors
    assert scores.tensor_scores[best] == pytest.approx(1.0)  # normalised by the best block tensor
    assert select_tensors(model, layers, scores, threshold=1.0).tensors == (best,)
    chosen = select_tensors(model, layers, scores.tensor_scores, threshold=0.5).tensors
    assert set(chosen) == {n for n in owner if scores.tensor_scores[n] >= 0.5}


def test_select_tensors_under_a_parameter_share():
    model = tiny_classifier(num_blocks=4)
    layers = LayerMap.from_model(model)
    scores = score(model, toy_batches(), "gradient")
    sizes = {n: p.numel() for n, p in model.named_parameters()}
    plan = select_tensors(model, layers, scores, budget=0.1)
    assert 0 < sum(sizes[n] for n in plan.tensors) <= 0.1 * TOTAL
    # greedy by score: every skipped tensor that scores higher than a chosen one did not fit
    spent = sum(sizes[n] for n in plan.tensors)
    for name in block_owner(layers):
        if name not in plan.tensors and scores.tensor_scores[name] > min(scores.tensor_scores[n] for n in plan.tensors):
            assert spent + sizes[name] > 0.1 * TOTAL or scores.tensor_scores[name] <= 0


def test_select_tensors_trains_exactly_those_tensors():
    model = tiny_classifier(num_blocks=4)
    layers = LayerMap.from_model(model)
    plan = select_tensors(model, layers, score(model, toy_batches(), "gradient"), budget=4)
    assert plan.apply(model, layers) == sum(
        p.numel() for n, p in model.named_parameters() if n in set(plan.tensors) | set(layers.units["head"])
    )
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == set(plan.tensors) | set(layers.units["head"])
    assert Plan.from_json(plan.to_json()) == plan


def test_select_tensors_errors():
    model = tiny_classifier(num_blocks=4)
    layers = LayerMap.from_model(model)
    tensors = {n: 0.5 for n, _ in model.named_parameters()}
    scores = LayerScores("gradient", [1.0] * 4, tensor_scores=tensors)
    with pytest.raises(FreezetuneError, match="exactly one"):
        select_tensors(model, layers, scores)
    with pytest.raises(FreezetuneError, match="exactly one"):
        select_tensors(model, layers, scores, threshold=0.5, budget=2)
    with pytest.raises(FreezetuneError, match="no block tensor scores >= 2"):
        select_tensors(model, layers, scores, threshold=2.0)
    with pytest.raises(FreezetuneError, match="no per-tensor scores"):
        select_tensors(model, layers, fixed([1, 1, 1, 1], "semantic"), budget=2)
    with pytest.raises(FreezetuneError, match="does not have"):
        select_tensors(model, layers, {"nope.weight": 1.0}, budget=1)
    with pytest.raises(FreezetuneError, match="holds no scored block tensor"):
        select_tensors(model, layers, scores, budget=1e-6)
    with pytest.raises(FreezetuneError, match="whole number"):
        select_tensors(model, layers, scores, budget=2.5)


# ---------------------------------------------------------------------- auto
def test_auto_plan_scores_the_runs_sample():
    model, batches = clustered_model_and_batches(scramble_block=2)
    layers = LayerMap.from_model(model)
    context = ResolveContext(model=model, sample=lambda: batches)
    plan = auto_plan(layers, context, scorer="semantic", budget=1, contiguous=False)
    assert plan.blocks == (2,)
    assert len(context.selections) == 1 and "chosen: blocks 2" in context.selections[0]["explanation"]
    with pytest.raises(FreezetuneError, match="scores the model on labelled data"):
        auto_plan(layers, ResolveContext(model=model), scorer="semantic", budget=1)
    with pytest.raises(FreezetuneError, match="smaller than one block"):
        auto_plan(layers, ResolveContext(sample=batches), scorer="semantic", budget=0.01)


def test_auto_at_tensor_granularity_through_the_spec():
    model, batches = clustered_model_and_batches(scramble_block=2)
    layers = LayerMap.from_model(model)
    context = ResolveContext(model=model, sample=lambda: batches)
    plan = resolve("auto:gradient:granularity=tensor:budget=3", layers, context)
    assert len(plan.tensors) == 3 and plan.spec == "auto:gradient:granularity=tensor:budget=3"
    assert "tensor granularity, the 3 best tensors" in context.selections[0]["explanation"]
    by_threshold = resolve("auto:fisher:granularity=tensor:threshold=0.5", layers, ResolveContext(sample=batches))
    scores = score(model, batches, "fisher")
    assert set(by_threshold.tensors) == {n for n in block_owner(layers) if scores.tensor_scores[n] >= 0.5}


@pytest.mark.parametrize("spec, message", [
    ("auto:semantic:granularity=tensor", "scores blocks only"),
    ("auto:gradient:granularity=layer", "unknown granularity"),
    ("auto:gradient:threshold=0.5", "threshold selects tensors"),
])
def test_auto_tensor_granularity_errors(spec, message):
    model, batches = clustered_model_and_batches(scramble_block=2)
    with pytest.raises(FreezetuneError, match=message):
        resolve(spec, LayerMap.from_model(model), ResolveContext(sample=batches))


# ---------------------------------------------------------------------- data and CLI glue
def test_sample_batches_is_seeded_and_capped():
    import datasets

    g = torch.Generator().manual_seed(0)
    rows = {"input_ids": [], "attention_mask": [], "labels": []}
    for i in range(40):
        length = int(torch.randint(4, 10, (1,), generator=g))
        rows["input_ids"].append(torch.randint(5, 100, (length,), generator=g).tolist())
        rows["attention_mask"].append([1] * length)
        rows["labels"].append(i % 3)
    data = datasets.Dataset.from_dict(rows)
    first = sample_batches(data, size=20, batch_size=8, seed=1)
    again = sample_batches(data, size=20, batch_size=8, seed=1)
    assert sum(len(b["labels"]) for b in first) == 20 and len(first) == 3
    assert all(torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(first, again))
    assert sum(len(b["labels"]) for b in sample_batches(data, size=256)) == 40  # min(size, rows)
    with pytest.raises(FreezetuneError, match="labels"):
        sample_batches(data.remove_columns("labels"))


def test_score_command(tiny_model_dir, sentiment_csv, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    score_command.add_parser(parser.add_subparsers())
    args = parser.parse_args([
        "score", "--model", tiny_model_dir, "--data", str(sentiment_csv), "--scorer", "semantic",
        "--scorer", "fisher", "--samples", "32", "--plot", str(tmp_path / "s.png"), "--json", str(tmp_path / "s.json"),
    ])
    assert args.run(args) == 0
    out = capsys.readouterr().out
    assert "scorer: semantic (32 examples" in out and "scorer: fisher" in out
    assert (tmp_path / "s.png").exists() and not list(tmp_path.glob("s-*.png"))  # one figure for both scorers
    assert "of one full fine-tuning run" in out and "one full fine-tuning run here ~" in out
    saved = json.loads((tmp_path / "s.json").read_text())
    assert [r["scorer"] for r in saved["scores"]] == ["semantic", "fisher"] and len(saved["scores"][0]["scores"]) == 4
    estimate = saved["full_run_estimate"]
    assert estimate["step_s"] > 0 and estimate["run_s"] == pytest.approx(estimate["step_s"] * estimate["steps"])
    for result in saved["scores"]:
        assert result["details"]["share_of_full_run"] == pytest.approx(result["seconds"] / estimate["run_s"])
    every = parser.parse_args(["score", "--model", tiny_model_dir, "--data", str(sentiment_csv), "--scorer", "all",
                               "--samples", "64", "--json", str(tmp_path / "all.json")])
    assert every.run(every) == 0
    assert [r["scorer"] for r in json.loads((tmp_path / "all.json").read_text())["scores"]] == list(SCORERS)


def test_selected_plans_reload_from_their_spec_without_scoring():
    model, batches = clustered_model_and_batches(scramble_block=2)
    layers = LayerMap.from_model(model)
    scores = score(model, batches, "fisher")
    for plan in (select_tensors(model, layers, scores, budget=3), select_tensors(model, layers, scores, threshold=0.5),
                 select_tensors(model, layers, scores, budget=2, head=False), select_blocks(scores, layers, budget=2)):
        assert resolve(plan.spec, layers) == plan
