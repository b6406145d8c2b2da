"""A retention floor that broke early: the run trains again one block deeper and keeps the better attempt."""

import pytest
import torch

from conftest import tiny_classifier, toy_dataset
from freezetune.core.config import TrainConfig
from freezetune.core.layout import LayerMap
from freezetune.core.plan import Plan
from freezetune.measure.metrics import METRIC_DIRECTIONS, sampling_error
from freezetune.runs.retention_retry import (
    deepen_while_forgetting,
    deeper,
    explain_retries,
    floor_broke,
    prefer_deeper,
)
from freezetune.scoring.retention_guard import RetentionGuard
from freezetune.strategies.registry import resolve
from freezetune.training.finetuner import Finetuner
from freezetune.training.state import FitResult

CONFIG = TrainConfig(epochs=3, batch_size=8, eval_batch_size=24, seed=0, lr=1e-3)


class Data:
    train, validation = toy_dataset(48, seed=1), toy_dataset(24, seed=2)


def moved(trained) -> int:
    base = tiny_classifier(num_blocks=4).backbone.state_dict()
    return sum(not torch.equal(base[n], p) for n, p in trained.backbone.state_dict().items()
               if n.startswith("encoder.layer.") and n.endswith("attention.self.query.weight"))


def measure(trained) -> float:  # 10 points of skill lost per block that moved
    return 1.0 - 0.1 * moved(trained)


def first_fit(floor: float):
    plan = Plan(blocks=(0, 1, 2, 3), retention_floor=floor, spec="depth:0")
    tuner = Finetuner(tiny_classifier(num_blocks=4), plan, config=CONFIG, callbacks=[RetentionGuard(floor, measure)])
    return tuner, tuner.fit(Data.train, Data.validation)


def test_deeper_keeps_the_floor_and_stops_at_head_only_and_at_plans_that_are_not_a_prefix():
    layers = LayerMap.from_model(tiny_classifier(num_blocks=4))
    plan = deeper(Plan(blocks=(1, 2, 3), retention_floor=0.8), layers)
    assert plan == Plan(blocks=(2, 3), retention_floor=0.8) and plan.spec == "depth:2"
    assert deeper(resolve("head_only", layers), layers) is None
    assert deeper(resolve("alternate", layers), layers) is None
    assert deeper(resolve("lora:r=4", layers), layers) is None


def test_a_broken_floor_retries_deeper_until_it_holds_and_keeps_the_better_validation():
    tuner, fit = first_fit(floor=0.75)  # depth 0 moves 4 blocks: 60 % kept at the first evaluation
    assert floor_broke(fit) and fit.stopped_early
    first_time = fit.costs["train_time_s"]
    kept_tuner, kept_fit, attempts = deepen_while_forgetting(tuner, fit, Data, fresh_model=lambda: tiny_classifier(
        num_blocks=4), measure=measure, run_dir=None)
    plans = [a["plan"] for a in attempts]
    assert plans[0] == "depth:0" and attempts[0]["floor_broke"]
    assert plans == [f"depth:{d}" for d in range(len(plans))]  # one block deeper each time
    assert sum(a["kept"] for a in attempts) == 1
    kept = next(a for a in attempts if a["kept"])
    assert kept["plan"] == kept_tuner.plan.spec and kept_fit.costs["retention_retries"] == attempts
    metric = kept_tuner.config.metric
    assert kept["validation"] == kept_fit.best_metrics[metric]
    assert kept_fit.best_metrics["retention_kept"] >= 0.75  # depth 2 moves 2 blocks: 80 % kept
    assert kept["plan"] == "depth:2" and not kept["floor_broke"]  # a floor that holds beats any that broke
    others = sum(a["train_time_s"] for a in attempts if not a["kept"])
    assert kept_fit.costs["train_time_s"] == pytest.approx(kept["train_time_s"] + others)
    assert others >= first_time
    assert "<- kept" in explain_retries(attempts, metric, 0.1)
    assert tuner.optimizer is None  # the first attempt's moments were freed before the retry trained


def test_a_floor_that_holds_trains_once():
    tuner, fit = first_fit(floor=0.5)  # 60 % kept: above the floor
    assert not floor_broke(fit)
    same_tuner, same_fit, attempts = deepen_while_forgetting(tuner, fit, Data, fresh_model=lambda: 1 / 0,
                                                             measure=measure, run_dir=None)
    assert same_tuner is tuner and same_fit is fit and attempts == []


def fit_with(validation: float, kept: float, n: int = 500) -> FitResult:
    return FitResult(best_metrics={"accuracy": validation, "n": n, "retention_kept": kept}, best_step=1, history=[],
                     costs={}, plan=Plan(blocks=(0,)), lr=1e-4)


@pytest.mark.parametrize("deep, shallow, kept_deeper", [
    (fit_with(0.85, 0.85), fit_with(0.90, 0.60), True),    # only the deeper holds the floor: kept, whatever it scores
    (fit_with(0.90, 0.60), fit_with(0.85, 0.85), False),   # only the shallower holds it
    (fit_with(0.852, 0.85), fit_with(0.858, 0.82), True),  # both hold, 0.6 points apart on 500 rows: a tie
    (fit_with(0.830, 0.85), fit_with(0.858, 0.82), False),  # 2.8 points: beyond the 2.2 of sampling error
    (fit_with(0.830, 0.85), fit_with(0.858, 0.82, n=5000), False),  # 0.7 of sampling error on 5,000 rows
    (fit_with(0.855, 0.65), fit_with(0.858, 0.60), True),  # neither holds: the same rule
])
def test_between_attempts_alike_the_deeper_wins_within_the_validations_sampling_error(deep, shallow, kept_deeper):
    assert prefer_deeper(deep, shallow, 0.8, "accuracy", METRIC_DIRECTIONS) is kept_deeper


def test_a_loss_has_no_sampling_margin():
    deep, shallow = fit_with(0.5, 0.9), fit_with(0.5, 0.9)
    deep.best_metrics["loss"], shallow.best_metrics["loss"] = 0.40, 0.39
    assert not prefer_deeper(deep, shallow, 0.8, "loss", METRIC_DIRECTIONS)
    assert sampling_error("loss", 500) == 0.0 and sampling_error("mcc", 400) == pytest.approx(0.05)


def test_a_floor_that_held_for_a_while_is_retried_once():
    # 3 epochs; the first evaluation keeps the floor (depth 2 moves 2 blocks: 80 %), a later one breaks it
    moves = iter([2, 3, 3, 3])

    def measure_late(trained) -> float:  # 80 % kept at the first evaluation, 70 % after
        return 1.0 - 0.1 * next(moves, 3)

    plan = Plan(blocks=(0, 1, 2, 3), retention_floor=0.75, spec="depth:0")
    tuner = Finetuner(tiny_classifier(num_blocks=4), plan, config=CONFIG,
                      callbacks=[RetentionGuard(0.75, measure_late)])
    fit = tuner.fit(Data.train, Data.validation)
    assert floor_broke(fit) and fit.best_metrics["retention_kept"] >= 0.75
    _, kept_fit, attempts = deepen_while_forgetting(tuner, fit, Data, fresh_model=lambda: tiny_classifier(
        num_blocks=4), measure=measure_late, run_dir=None)
    assert [a["plan"] for a in attempts] == ["depth:0", "depth:1"]  # the retry broke too, yet no third attempt
    assert attempts[1]["floor_broke"] and sum(a["kept"] for a in attempts) == 1
