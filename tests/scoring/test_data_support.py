"""Which blocks the training data supports: the gradient noise scale, the support rule, the LoRA fallback."""

import pytest
import torch

from conftest import tiny_classifier, toy_batches
from freezetune.core.layout import LayerMap
from freezetune.scoring.auto import auto_plan
from freezetune.scoring.gradient_scorers import _GradStats, noise_scale
from freezetune.scoring.result import LayerScores
from freezetune.scoring.select import data_support, explain, select_blocks
from freezetune.strategies.registry import ResolveContext, resolve


def synthetic_stats(mean: torch.Tensor, sd: float, sizes: list[int], seed: int = 0) -> _GradStats:
    """Batch gradients drawn as a real sample's are: each row's gradient is ``mean`` + N(0, sd²) noise."""
    g = torch.Generator().manual_seed(seed)
    sq, total = [], torch.zeros_like(mean)
    for b in sizes:
        rows = mean + sd * torch.randn(b, mean.numel(), generator=g)
        batch = rows.mean(0)
        sq.append(float(batch.double().pow(2).sum()))
        total += b * batch
    return _GradStats(["w"], {"w": mean.numel()}, {"w": 1.0}, {"w": sq}, sizes, sizes, {"w": total})


@pytest.mark.parametrize("sizes", [[32] * 8, [32, 32, 32, 4]])  # a ragged last batch too
def test_noise_scale_recovers_the_trace_over_the_squared_mean(sizes):
    dims, sd = 2000, 0.5
    mean = torch.full((dims,), 0.02)  # |G|² = 0.8; tr(Σ) = 2000 · 0.25 = 500: the noise scale is 625 rows
    found = [noise_scale(synthetic_stats(mean, sd, sizes, seed), ["w"]) for seed in range(20)]
    typical = sorted(f for f in found if f is not None)[len(found) // 2]
    assert typical == pytest.approx(625, rel=0.35)


def test_no_mean_gradient_has_no_noise_scale_and_one_batch_cannot_tell():
    assert noise_scale(synthetic_stats(torch.zeros(2000), 0.5, [32] * 8), ["w"]) is None
    assert noise_scale(synthetic_stats(torch.full((2000,), 0.02), 0.5, [32]), ["w"]) is None


def scores_with(noise: list[float | None]) -> LayerScores:
    return LayerScores("gradient", [0.4, 0.5, 0.8, 1.0], noise_scale=noise)


def test_support_keeps_the_suffix_the_rows_resolve_and_none_when_no_block_is():
    layers = LayerMap.from_model(tiny_classifier(num_blocks=4))
    scores = scores_with([2000.0, 900.0, 400.0, None])  # the top block showed no signal
    assert data_support(scores, 1000) == [0.5, pytest.approx(1.111, abs=1e-3), 2.5, 0.0]
    assert select_blocks(scores, layers, budget=4, support=data_support(scores, 1000)).blocks == ()
    scores = scores_with([2000.0, 900.0, 400.0, 300.0])
    support = data_support(scores, 1000)
    assert select_blocks(scores, layers, budget=4, support=support).blocks == (1, 2, 3)  # block 0: 0.5 < 1
    assert select_blocks(scores, layers, budget=4, support=data_support(scores, 10_000)).blocks == (0, 1, 2, 3)
    assert select_blocks(scores, layers, budget=4, contiguous=False, support=support).blocks == (1, 2, 3)
    why = explain(scores, layers, budget=4, support=support, rows=1000)
    assert "support" in why and "0.50" in why and "chosen: blocks 1-3" in why
    assert "no block" in explain(scores, layers, budget=4, support=data_support(scores, 100), rows=100)
    assert data_support(scores, None) is None and data_support(scores_with(None), 1000) is None


class Rows:
    """Stands in for a training set of ``n`` rows (auto reads only its length)."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n


def test_auto_falls_back_to_lora_on_every_block_when_the_data_supports_none():
    model = tiny_classifier(num_blocks=4)
    layers = LayerMap.from_model(model)
    batches = toy_batches(n=64, seed=3)  # random labels: no gradient direction the rows can resolve
    context = ResolveContext(model=model, sample=lambda: batches, train=Rows(8))
    plan = auto_plan(layers, context, scorer="gradient", budget=4)
    assert plan == resolve("lora:r=8", layers)
    assert "LoRA r=8 adapts every block" in context.selections[0]["explanation"]
    learnable = toy_batches(n=64, seed=3)
    for batch in learnable:  # every row says class 0: a gradient direction every row shares
        batch["labels"] = torch.zeros_like(batch["labels"])
    many = ResolveContext(model=model, sample=lambda: learnable, train=Rows(8))
    assert auto_plan(layers, many, scorer="gradient", budget=4).blocks == (0, 1, 2, 3)
    assert resolve("auto:lora=4", layers, ResolveContext(model=model, sample=lambda: batches,
                                                        train=Rows(8))) == resolve("lora:r=4", layers)
