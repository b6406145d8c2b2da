"""auto:...:retention=R: the run keeps the best evaluation that keeps the floor and stops at the first below it."""

import json

import pytest
import torch

from conftest import tiny_classifier, toy_batches, toy_dataset
from freezetune.core.config import TrainConfig
from freezetune.core.errors import FreezetuneError
from freezetune.core.layout import LayerMap
from freezetune.core.plan import Plan
from freezetune.scoring import resolve_strategy
from freezetune.scoring.retention_guard import RetentionGuard
from freezetune.training.finetuner import Finetuner

CONFIG = TrainConfig(epochs=5, batch_size=8, eval_batch_size=24, seed=0, lr=1e-3)


def fit_with_guard(kept_per_evaluation: list[float], floor: float):
    """Train a tiny classifier 5 epochs; the skill 'kept' at the n-th evaluation is the n-th value."""
    model = tiny_classifier(num_blocks=4)
    calls = []

    def measure(trained):
        calls.append(trained)
        return kept_per_evaluation[len(calls) - 1]

    guard = RetentionGuard(floor, measure)
    tuner = Finetuner(model, Plan(blocks=(2, 3), retention_floor=floor), config=CONFIG, callbacks=[guard])
    result = tuner.fit(toy_dataset(48, seed=1), toy_dataset(24, seed=2))
    return tuner, result, calls


def test_the_best_evaluation_that_keeps_the_floor_is_kept_and_the_first_below_it_stops_the_run():
    tuner, result, calls = fit_with_guard([0.95, 0.9, 0.7, 0.6, 0.5], floor=0.8)
    assert len(calls) == 3 and result.stopped_early  # epoch 3 broke the floor: epochs 4 and 5 never ran
    assert [m["retention_kept"] for m in result.history] == [0.95, 0.9, 0.7]
    assert [m["keeps_skill"] for m in result.history] == [True, True, False]
    assert result.best_step in {m["step"] for m in result.history[:2]}  # never the evaluation below the floor
    guard = result.costs["retention_guard"]
    assert guard["floor"] == 0.8 and guard["floor_kept"] and len(guard["evaluations"]) == 3


def test_a_floor_broken_at_the_first_evaluation_keeps_that_one_and_says_so(caplog):
    tuner, result, calls = fit_with_guard([0.5, 0.4, 0.3, 0.2, 0.1], floor=0.8)
    assert len(calls) == 1 and result.stopped_early
    assert result.best_step == result.history[0]["step"] and result.best_metrics["retention_kept"] == 0.5
    assert result.costs["retention_guard"]["floor_kept"] is False
    assert "no evaluation kept it" in caplog.text


def test_every_evaluation_keeping_the_floor_trains_to_the_end():
    _, result, calls = fit_with_guard([0.99] * 5, floor=0.8)
    assert len(calls) == 5 and not result.stopped_early


def test_auto_with_a_floor_hands_the_run_its_guard():
    model = tiny_classifier(num_blocks=4)
    resolution = resolve_strategy("auto:retention=0.8", model, sample=toy_batches(seed=3), retention=lambda m: 1.0)
    assert resolution.strategy.retention_floor == 0.8
    assert [type(c) for c in resolution.callbacks] == [RetentionGuard]
    assert [type(c) for c in resolution.fresh().callbacks] == [RetentionGuard]  # each run of a sweep: its own
    assert resolution.fresh().callbacks[0] is not resolution.callbacks[0]
    assert "Retention floor 80%" in resolution.selections[-1]["explanation"]
    without = resolve_strategy("auto", model, sample=toy_batches(seed=3))
    assert without.strategy.retention_floor is None and without.callbacks == []


@pytest.mark.parametrize("spec, extra, message", [
    ("auto:retention=0.8", {}, "run with --retention sts, ppl or cka"),
    ("auto:retention=1.5", {"retention": lambda m: 1.0}, "in \\(0, 1\\]"),
    ("auto:retention=0", {"retention": lambda m: 1.0}, "in \\(0, 1\\]"),
])
def test_floor_errors(spec, extra, message):
    with pytest.raises(FreezetuneError, match=message):
        resolve_strategy(spec, tiny_classifier(num_blocks=4), sample=toy_batches(seed=3), **extra)


def test_a_plan_keeps_its_floor_through_json_and_refuses_a_bad_one():
    plan = Plan(blocks=(1, 2, 3), retention_floor=0.75)
    assert Plan.from_json(plan.to_json()) == plan
    assert "0.75" in json.dumps(plan.to_dict()) and "75%" in plan.describe(LayerMap.from_model(tiny_classifier()))
    with pytest.raises(FreezetuneError, match="retention_floor"):
        Plan(retention_floor=1.2)


def test_the_guard_measures_without_changing_weights_or_modes():
    model = tiny_classifier(num_blocks=4)
    before = {n: p.detach().clone() for n, p in model.state_dict().items()}
    guard = RetentionGuard(0.5, lambda m: 0.9)
    metrics = {"step": 3, "epoch": 0}
    model.train()
    guard.on_evaluate(type("T", (), {"model": model})(), metrics)
    assert metrics["keeps_skill"] and metrics["retention_kept"] == 0.9 and model.training
    assert all(torch.equal(before[n], p) for n, p in model.state_dict().items())


def test_a_floor_needs_the_best_weights_restored():
    from dataclasses import replace

    tuner = Finetuner(tiny_classifier(num_blocks=4), Plan(blocks=(3,), retention_floor=0.8),
                      config=replace(CONFIG, keep_best=False), callbacks=[RetentionGuard(0.8, lambda m: 1.0)])
    with pytest.raises(FreezetuneError, match="drop --no-keep-best"):
        tuner.fit(toy_dataset(48, seed=1), toy_dataset(24, seed=2))
