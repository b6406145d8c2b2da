"""Auto-RGN: per-tensor rates from relative gradient norms, in the plan and re-measured every epoch."""

import math

import pytest
import torch

from conftest import tiny_classifier, toy_batches
from freezetune.core.layout import LayerMap
from freezetune.core.plan import Plan
from freezetune.runs.finetuner import Finetuner
from freezetune.scoring.rgn import RelativeGradientNorms, RgnCallback, multipliers
from freezetune.strategies.registry import ResolveContext, resolve


def rgn_plan_for(model):
    layers = LayerMap.from_model(model)
    context = ResolveContext(model=model, sample=toy_batches)
    plan = resolve("auto_rgn", layers, context)
    return layers, plan, context


def test_auto_rgn_plan_trains_everything_with_per_tensor_rates():
    model = tiny_classifier()
    layers, plan, context = rgn_plan_for(model)
    assert plan.blocks == (0, 1, 2, 3) and plan.embeddings and plan.head and plan.lr_rescale == "rgn"
    rates = dict(plan.tensor_lr_multipliers)
    assert set(rates) == {n for n, _ in model.named_parameters()}
    assert all(0 <= m <= 1 for m in rates.values())
    assert max(rates[n] for n in layers.block_of_tensor()) == pytest.approx(1.0)
    assert plan.apply(model, layers) == sum(p.numel() for p in model.parameters())
    assert Plan.from_json(plan.to_json()) == plan
    assert "auto_rgn: first-epoch rate multipliers" in context.selections[0]["explanation"]
    assert "per-tensor lr x" in plan.describe(layers)
    # the common options still apply: embeddings frozen on request, their rates unused
    assert not resolve("auto_rgn:embeddings=false", layers, ResolveContext(sample=toy_batches)).embeddings


def test_multipliers_are_normalised_by_the_best_block_tensor_and_capped():
    rgn = {"head.w": 5.0, "b0.w": 2.0, "b1.w": 0.5, "b1.dead": 0.0}
    assert multipliers(rgn, ["b0.w", "b1.w", "b1.dead"]) == {"head.w": 1.0, "b0.w": 1.0, "b1.w": 0.25, "b1.dead": 0.0}
    assert multipliers({"a": 0.0}, ["a"]) == {"a": 0.0}


def test_rescale_uses_the_mean_rgn_over_the_epochs_steps():
    a, b = torch.nn.Parameter(torch.full((2, 2), 2.0)), torch.nn.Parameter(torch.full((4,), 1.0))  # norms 4, 2
    optimizer = torch.optim.SGD([{"params": [a], "names": ["a"], "base_lr": 0.1},
                                 {"params": [b], "names": ["b"], "base_lr": 0.1}], lr=0.1)
    rgn = RelativeGradientNorms()
    for ga, gb in [(1.0, 1.0), (3.0, 0.0)]:  # per-step grad norms: a 2, 6 ; b 2, 0
        a.grad, b.grad = torch.full((2, 2), ga), torch.full((4,), gb)
        rgn.add(optimizer)
    saved = rgn.state_dict()
    new = rgn.rescale(optimizer, 0.1, ["a", "b"])
    # mean RGN: a (2/4 + 6/4) / 2 = 1.0 ; b (2/2 + 0) / 2 = 0.5
    assert new == pytest.approx({"a": 1.0, "b": 0.5})
    assert [g["base_lr"] for g in optimizer.param_groups] == pytest.approx([0.1, 0.05])
    assert rgn.steps == 0 and saved["steps"] == 2  # a new epoch starts from nothing; the old state was a copy


def test_finetuner_gives_every_tensor_its_rate_and_remeasures_each_epoch():
    model = tiny_classifier()
    layers, plan, _ = rgn_plan_for(model)
    tuner = Finetuner(model, plan, progress=False, lr=1e-3, epochs=3, warmup_ratio=0.0)
    assert sum(isinstance(c, RgnCallback) for c in tuner.callbacks) == 1  # the plan brings its re-measurement
    groups = tuner.optimizer.param_groups
    assert len(groups) == len(list(model.parameters()))  # one group per tensor
    rates = dict(plan.tensor_lr_multipliers)
    assert all(g["base_lr"] == pytest.approx(1e-3 * rates[g["names"][0]]) for g in groups)
    before = {g["names"][0]: g["base_lr"] for g in groups}
    result = tuner.fit(toy_batches())
    log = result.costs["rgn_lr_multipliers"]
    assert len(log) == 3  # from the plan, then after epochs 1 and 2 (none after the last)
    assert set(log[0]) == {"embeddings", "block.0", "block.1", "block.2", "block.3", "head"}
    after = {g["names"][0]: g["base_lr"] for g in tuner.optimizer.param_groups}
    assert after != before
    assert max(after[n] for n in layers.block_of_tensor()) == pytest.approx(1e-3)
    assert all(0 <= v <= 1e-3 + 1e-12 and math.isfinite(v) for v in after.values())
