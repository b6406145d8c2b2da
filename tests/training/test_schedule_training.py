"""Schedules in the loop: the optimizer follows every plan change, nothing leaks, costs count everything."""

import json

import pytest
import torch

from conftest import FAST, tiny_classifier, toy_dataset
from freezetune import Callback, Finetuner
from freezetune.cli.main import main
from freezetune.training.lr_schedule import lr_factor, warmup_steps


class Watch(Callback):
    """Checks, at every optimizer step, that no frozen parameter has a gradient or optimizer state."""

    def __init__(self):
        self.rates, self.blocks, self.plans, self.leaks = [], [], [], []

    def before_optimizer_step(self, tuner):
        for name, param in tuner.model.named_parameters():
            if not param.requires_grad and (param.grad is not None or param in tuner.optimizer.state):
                self.leaks.append(name)
        self.blocks.append(tuner.plan.blocks)
        self.plans.append((tuner.plan.blocks, tuner.plan.tensors, tuner.plan.embeddings))

    def on_step_end(self, tuner, record):
        self.rates.append(record["lr"])


def fit(strategy, **options):
    model = tiny_classifier()
    watch = Watch()
    settings = dict(progress=False, lr=3e-3, epochs=3, batch_size=8, warmup_ratio=0.1, **options)
    tuner = Finetuner(model, strategy, callbacks=[watch], **settings)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    result = tuner.fit(toy_dataset(n=40), toy_dataset(n=16, seed=1))
    return model, tuner, result, watch, before


@pytest.mark.parametrize("strategy", ["lift:steps=2", "lisa:1:interval=3", "hft:steps=3", "gradual_unfreeze:steps=3",
                                      "autofreeze:interval=2:tolerance=0.5"])
def test_the_optimizer_follows_every_plan_change(strategy):
    model, tuner, result, watch, before = fit(strategy)
    assert not watch.leaks  # frozen: no gradient (backprop never reached it) and no optimizer state
    assert len(set(watch.plans)) > 1
    # the rate is the pure schedule of the step, continuous across plan changes
    total = result.costs["steps"]
    expected = [3e-3 * lr_factor(step, total, warmup_steps(0.1, total)) for step in range(total)]
    assert watch.rates == pytest.approx(expected)
    # every parameter that trained at some point moved; the rest are bit-identical
    params = dict(model.named_parameters())
    trained = set(result.trained_names)
    assert all(not torch.equal(params[n], before[n]) for n in trained if "bias" not in n or "classifier" in n)
    assert all(torch.equal(params[n], before[n]) for n in params if n not in trained)
    assert result.costs["trainable_params"] == sum(params[n].numel() for n in trained)


def test_lift_counts_every_block_it_visited_and_newly_trainable_blocks_update_at_once():
    model, tuner, result, watch, before = fit("lift:steps=2")  # 15 steps: blocks 3, 2, 1, 0, 3, ...
    assert watch.blocks[:8] == [(3,), (3,), (2,), (2,), (1,), (1,), (0,), (0,)]
    block2 = "backbone.encoder.layer.2.output.dense.weight"
    assert block2 in result.trained_names
    one_block = 8544
    assert result.costs["trainable_params"] == 4 * one_block + 99  # all four blocks and the head
    assert result.costs["trainable_params_at_end"] < result.costs["trainable_params"]


def test_a_schedule_run_logs_changes_draws_its_timeline_and_saves_every_trained_tensor(tiny_model_dir, sentiment_csv,
                                                                                      tmp_path):
    out = tmp_path / "lift"
    args = ["train", "--model", tiny_model_dir, "--data", str(sentiment_csv), "--output", str(out), *FAST,
            "--epochs", "2", "--strategy", "lift:steps=2"]
    assert main(args) == 0
    changes = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    changes = [c for c in changes if c["kind"] == "plan_change"]
    assert [c["blocks"] for c in changes[:3]] == [[2], [1], [0]] and [c["step"] for c in changes[:3]] == [2, 4, 6]
    assert (out / "timeline.png").stat().st_size > 1000
    saved = json.loads((out / "checkpoint" / "checkpoint.json").read_text())
    for block in range(4):
        assert f"backbone.encoder.layer.{block}.output.dense.weight" in saved["tensors"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["summary"]["trainable_params"] == saved["trained_params"]
