"""auto's default objective: the cheapest frozen-prefix depth within the validation noise of the best."""

import math

import pytest

import freezetune.scoring.auto as auto_module
from conftest import tiny_classifier, toy_batches
from freezetune.core.errors import FreezetuneError
from freezetune.core.layout import LayerMap
from freezetune.scoring.objective import block_gain, predicted_loss, within_noise_choice
from freezetune.scoring.plan_cost import predicted_share
from freezetune.scoring.resolve import resolve_strategy
from freezetune.scoring.result import LayerScores
from freezetune.strategies.registry import resolve


class Rows:
    """Stands in for a data set of ``n`` rows (auto reads only its length)."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n


def planted(raw: list[float], noise: list[float | None]) -> LayerScores:
    top = max(raw) or 1.0
    return LayerScores("gradient", [r / top for r in raw], raw=list(raw), noise_scale=noise, samples=48, batches=6)


@pytest.fixture
def plant(monkeypatch):
    """auto scores ``scores`` instead of measuring (the tiny model's own gradients carry no planted signal)."""
    def use(scores: LayerScores):
        monkeypatch.setattr(auto_module, "score", lambda *args, **kwargs: scores)
    return use


def choose(spec: str, *, train: int, validation: int | None):
    model = tiny_classifier(num_blocks=4)
    resolution = resolve_strategy(spec, model, sample=toy_batches(n=48), train=Rows(train),
                                  validation=Rows(validation) if validation else None)
    return resolution.strategy, resolution.selections[0]["explanation"], LayerMap.from_model(model)


def test_the_pieces_compute_what_they_say():
    # all the gain in blocks 2 and 3: freezing 0-1 gives up nothing, freezing 2 a quarter of the scale
    assert predicted_loss([0.0, 0.0, 1.0, 3.0], 12.0) == [0.0, 0.0, 0.0, 3.0, 12.0]
    assert predicted_loss([0.0, 0.0], 12.0) == [0.0, 0.0, 0.0]  # no signal: nothing to lose
    assert block_gain([2.0, 2.0], [2.0, 0.5]) == [1.0, 0.0]  # half resolved; below 1 nothing is
    assert block_gain([-1.0, 2.0], None) == [0.0, 2.0]
    assert within_noise_choice([0.0, 1.0, 3.0], [0.9, 0.5, 0.1], 1.0) == 1
    assert within_noise_choice([0.0, 1.0, 3.0], [0.9, 0.5, 0.1], 5.0) == 2
    with pytest.raises(FreezetuneError):
        within_noise_choice([0.0], [0.5, 0.2], 1.0)
    # cost: full work of every block is 1 - fixed; head only is the fixed share; LoRA 2.5 of 3 passes per block
    assert predicted_share(6, 0) == pytest.approx(0.053 + 0.785)
    assert predicted_share(6, 6) == pytest.approx(0.053)
    assert predicted_share(6, 3) == pytest.approx(0.053 + 0.785 / 2)
    assert predicted_share(6, lora=True) == pytest.approx(0.053 + 0.785 * 2.5 / 3)
    assert predicted_share(6, blocks=(1, 3, 5)) == pytest.approx(0.053 + 0.785 * 13 / 18)


def test_a_planted_signal_in_the_top_blocks_freezes_the_rest(plant):
    plant(planted([0.0, 0.0, 1.0, 3.0], [100.0] * 4))
    # 10,000 rows resolve 99 % of each block's gradient; losses by depth 0, 0, 0, 7.5, 30 points (LOSS_SCALE 30);
    # 500 validation rows resolve 0.5/sqrt(500) = 2.24 points of accuracy: depths 0-2 tie, 2 is cheapest
    plan, why, layers = choose("auto", train=10_000, validation=500)
    assert plan == resolve("depth:2", layers)
    assert "auto chose depth:2" in why and "depth:0, depth:1, depth:2" in why
    assert "2.2 points" in why and "predicted cost" in why
    # 20 validation rows cannot resolve 7.5 points (their noise is 11.2): depth 3 is within it, and cheaper
    plan, why, _ = choose("auto", train=10_000, validation=20)
    assert plan == resolve("depth:3", layers)
    # the metric objective trains the best-scoring suffix, as before: the blocks with a positive score
    plan, _, _ = choose("auto:objective=metric", train=10_000, validation=500)
    assert plan.blocks == (2, 3)


def test_a_budget_limits_the_candidates(plant):
    plant(planted([0.0, 0.0, 1.0, 3.0], [100.0] * 4))
    plan, why, layers = choose("auto:budget=1", train=10_000, validation=500)
    assert plan == resolve("depth:3", layers)  # only depths 3 and 4 fit one block: 7.5 points beats 30
    assert "Only plans within the budget (1)" in why


def test_unresolved_blocks_carry_no_gain(plant):
    # the top block's gradient is large but 1,000 rows cannot resolve it (noise scale 5,000): the gain sits
    # in blocks 0-2, so freezing any of them gives up a third of 30 points
    plant(planted([1.0, 1.0, 1.0, 9.0], [100.0, 100.0, 100.0, 5000.0]))
    plan, _, layers = choose("auto", train=1000, validation=500)
    assert plan == resolve("depth:0", layers)


def test_when_no_plan_can_be_told_apart_the_cheapest_wins_and_the_text_says_so(plant):
    plant(planted([1.0, 1.0, 1.0, 1.0], [100.0] * 4))
    # 1 validation row: a noise of 50 points covers even freezing everything (30 points)
    plan, why, layers = choose("auto", train=10_000, validation=1)
    assert plan == resolve("depth:4", layers)
    assert "Your data cannot separate these plans" in why
    assert math.isclose(100 * 0.5 / math.sqrt(1), 50.0)


def test_no_supported_block_still_falls_back_to_lora(plant):
    plant(planted([1.0, 1.0, 1.0, 1.0], [1000.0] * 4))  # 100 rows support no block
    plan, why, layers = choose("auto", train=100, validation=500)
    assert plan == resolve("lora:r=8", layers)
    assert "LoRA r=8 adapts every block" in why
