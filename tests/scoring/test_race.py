"""auto:method=race: successive halving over frozen-prefix depths, on tiny models built from config."""

import pytest
import torch

from conftest import tiny_classifier, toy_dataset
from freezetune.core.config import TrainConfig
from freezetune.core.errors import FreezetuneError
from freezetune.core.layout import LayerMap
from freezetune.scoring.race import depths, estimate_cost
from freezetune.strategies.registry import ResolveContext, resolve

CONFIG = TrainConfig(epochs=3, batch_size=8, eval_batch_size=24, seed=0)


def context_for(model, **extra):
    return ResolveContext(model=model, train=toy_dataset(240, seed=1), validation=toy_dataset(24, seed=2),
                          config=CONFIG, **extra)


def weights(model):
    return {n: p.detach().clone() for n, p in model.state_dict().items()}


def test_race_chooses_a_depth_and_leaves_the_model_as_it_found_it():
    model = tiny_classifier(num_blocks=4)
    before = weights(model)
    layers = LayerMap.from_model(model)
    context = context_for(model)
    plan = resolve("auto:method=race", layers, context)
    assert all(torch.equal(before[n], p) for n, p in model.state_dict().items())
    assert all(not p.grad is not None for p in model.parameters())  # noqa: E714 - no gradients left behind
    race = context.selections[0]["race"]
    assert [c["spec"] for c in race["candidates"]] == [f"depth:{d}" for d in range(5)]
    assert race["chosen"] in {c["name"] for c in race["candidates"]}
    assert plan == resolve(race["chosen"], layers)
    # successive halving: 5 candidates, 1/3 survive each rung; the rung that leaves one is the last
    assert len(race["rungs"]) == 1
    assert [len(c["results"]) for c in race["candidates"]] == [1] * 5
    assert race["estimated_share"] <= 0.25
    assert "method=race" in context.selections[0]["explanation"] and "<- chosen" in context.selections[0]["explanation"]


def test_race_is_repeatable():
    layers_a, layers_b = (LayerMap.from_model(tiny_classifier(num_blocks=4)) for _ in range(2))
    a, b = context_for(layers_a.model), context_for(layers_b.model)
    torch.manual_seed(0)
    plan_a = resolve("auto:method=race", layers_a, a)
    plan_b = resolve("auto:method=race", layers_b, b)
    assert plan_a == plan_b
    assert a.selections[0]["race"]["candidates"] == b.selections[0]["race"]["candidates"]


def test_race_budget_removes_dearer_candidates_and_rates_multiply_candidates():
    model = tiny_classifier(num_blocks=4)
    layers = LayerMap.from_model(model)
    context = context_for(model)
    resolve("auto:method=race:budget=1:rates=1+3", layers, context)
    names = [c["name"] for c in context.selections[0]["race"]["candidates"]]
    assert names == ["depth:3", "depth:3 (lr x3)", "depth:4", "depth:4 (lr x3)"]
    lrs = {c["name"]: c["lr"] for c in context.selections[0]["race"]["candidates"]}
    assert lrs["depth:3 (lr x3)"] == pytest.approx(3 * lrs["depth:3"])


@pytest.mark.parametrize("spec, extra, message", [
    ("auto:method=race", {"train": None}, "needs the training and validation data"),
    ("auto:method=race:share=0", {}, "share must be in"),
    ("auto:method=race:eta=1", {}, "eta must be at least 2"),
    ("auto:method=race:rates=1+x", {}, "rates are factors"),
    ("auto:method=bogus", {}, "unknown method .bogus. in .auto:method=bogus.; choose from score, race"),
    ("auto:method=race:budget=0.0001", {}, "smaller than one block"),
])
def test_race_errors(spec, extra, message):
    model = tiny_classifier(num_blocks=4)
    context = context_for(model)
    for key, value in extra.items():
        setattr(context, key, value)
    with pytest.raises(FreezetuneError, match=message):
        resolve(spec, LayerMap.from_model(model), context)


def test_candidate_depths_and_cost_model():
    assert depths(6) == list(range(7))
    deep = depths(30)
    assert deep[0] == 0 and deep[-1] == 30 and len(deep) == 9
    costs = [1.0, 0.5, 0.1]
    cheap, dear = (estimate_cost(costs, n0, 3, 8, 32, 2, [0, 1, 2], 96) for n0 in (1, 4))
    assert 0 < cheap < dear


def test_race_rungs_lengthen_by_eta_until_one_candidate_is_left():
    model = tiny_classifier(num_blocks=4)
    context = context_for(model)
    resolve("auto:method=race:eta=2", LayerMap.from_model(model), context)
    race = context.selections[0]["race"]
    assert len(race["rungs"]) == 2 and race["rungs"][1] == 2 * race["rungs"][0]  # 5 -> 2 -> 1
    assert sorted(len(c["results"]) for c in race["candidates"]) == [1, 1, 1, 2, 2]


def _candidate(depth: int, metric: float, loss: float):
    from freezetune.scoring.race import Candidate
    return Candidate(f"depth:{depth}", None, depth, 1e-4, 1.0, results=[(3, metric)], losses=[loss])


def test_race_ranks_by_loss_where_the_metric_does_not_tell_candidates_apart():
    from freezetune.scoring.race import _ranked
    # every MCC is 0 after 3 steps (flat): the loss decides, not the deepest prefix
    flat = [_candidate(1, 0.0, 0.62), _candidate(5, 0.0, 0.66), _candidate(3, 0.0, 0.60)]
    assert [c.depth for c in _ranked(flat, "mcc", {"mcc": "max"}, margin=0.045)] == [3, 1, 5]
    # a lead beyond the margin stands, whatever the loss; within it, the lower loss goes first
    mixed = [_candidate(0, 0.80, 0.50), _candidate(2, 0.70, 0.30), _candidate(4, 0.79, 0.45)]
    assert [c.depth for c in _ranked(mixed, "accuracy", {"accuracy": "max"}, margin=0.022)] == [4, 0, 2]
    # no margin (a loss-like metric, or n unknown): exact ties go to the deeper prefix
    ties = [_candidate(0, 0.5, 0.5), _candidate(2, 0.5, 0.5)]
    assert [c.depth for c in _ranked(ties, "accuracy", {"accuracy": "max"})] == [2, 0]
    # a task without a loss: the metric order stands
    nan = [_candidate(0, 0.80, float("nan")), _candidate(2, 0.79, float("nan"))]
    assert [c.depth for c in _ranked(nan, "accuracy", {"accuracy": "max"}, margin=0.05)] == [0, 2]


def test_race_record_and_explanation_show_the_loss_and_the_margin():
    model = tiny_classifier(num_blocks=4)
    context = context_for(model)
    resolve("auto:method=race", LayerMap.from_model(model), context)
    race = context.selections[0]["race"]
    assert race["margin"] == pytest.approx(0.5 / 24 ** 0.5)  # accuracy on 24 validation rows
    assert all(len(c["losses"]) == len(c["results"]) and c["losses"][0] > 0 for c in race["candidates"])
    explanation = context.selections[0]["explanation"]
    assert "ranked by validation loss" in explanation and "accuracy / loss" in explanation
