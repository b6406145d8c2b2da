"""The loop's contract, tried from outside: a Task and a Schedule defined only here train end to end."""

import pytest
import torch
from torch import nn

from conftest import tiny_bert, tiny_classifier, toy_batches, toy_dataset
from freezetune import Callback, Finetuner, FreezetuneError, Plan, Task


class MeanRegressor(nn.Module):
    """A backbone, mean pooling, one output: predicts a number per sequence."""

    def __init__(self, backbone):
        super().__init__()
        backbone.pooler = None  # unused here: it would get no gradient, which the first-step audit refuses
        self.backbone = backbone
        self.regressor = nn.Linear(backbone.config.hidden_size, 1)

    def forward(self, input_ids, attention_mask, **_):
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).float()
        return self.regressor((hidden * mask).sum(1) / mask.sum(1)).squeeze(-1)


class LengthRegression:
    """A toy task: predict the share of real tokens in the sequence (targets built from the batch itself)."""

    name = "length-regression"
    directions = {"loss": "min", "mae": "min"}

    def build_model(self, backbone, *, pooling):
        return MeanRegressor(backbone)

    def split(self, batch):
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        return inputs, inputs["attention_mask"].float().mean(1)

    def loss(self, outputs, targets):
        return nn.functional.mse_loss(outputs.float(), targets)

    def keep(self, outputs, targets):
        return {"pred": outputs.float().cpu(), "target": targets.cpu()}

    def metrics(self, kept):
        pred = torch.cat([k["pred"] for k in kept])
        target = torch.cat([k["target"] for k in kept])
        return {"loss": float(nn.functional.mse_loss(pred, target)), "mae": float((pred - target).abs().mean())}

    def predict(self, outputs):
        return {"value": outputs.tolist()}


def test_a_task_defined_outside_the_library_trains_end_to_end():
    task = LengthRegression()
    assert isinstance(task, Task)
    torch.manual_seed(0)
    model = task.build_model(tiny_bert(), pooling="mean")
    data = toy_batches(n=64)
    tuner = Finetuner(model, "top_k:2", task=task, metric="mae", progress=False, lr=3e-3, epochs=6,
                      warmup_ratio=0.0)
    before = tuner.evaluate(data)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    result = tuner.fit(data, data)
    assert result.best_metrics["mae"] < before["mae"] / 2
    assert set(result.history[0]) >= {"loss", "mae", "step", "epoch"}
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)
    # two tiny BERT blocks + the head unit: the regressor
    assert result.costs["trainable_params"] == 2 * 8544 + 33
    with pytest.raises(FreezetuneError, match="--metric accuracy is not one of this task's metrics"):
        Finetuner(task.build_model(tiny_bert(), pooling="mean"), "head_only", task=task, metric="accuracy",
                  progress=False, epochs=1).fit(data, data)
    # --metric auto on a task that names no default_metric monitors its loss
    assert Finetuner(task.build_model(tiny_bert(), pooling="mean"), "head_only", task=task).config.metric == "loss"


class TwoPhases:
    """The head alone for three steps, then the top two blocks join."""

    def __init__(self):
        self.asked = []

    def plan_at(self, step, epoch, observations):
        self.asked.append((step, epoch, "last_loss" in observations))
        return Plan(spec="warm-up") if step < 3 else Plan(blocks=(2, 3), spec="top-2")


class Changes(Callback):
    def __init__(self):
        self.seen = []

    def on_plan_change(self, tuner, old, new):
        self.seen.append((old and old.spec, new.spec, tuner.optimizer is not None))


def test_a_two_phase_schedule_trains_through_the_public_api():
    model = tiny_classifier()
    schedule, changes = TwoPhases(), Changes()
    block3 = model.backbone.encoder.layer[3].output.dense.weight
    embeddings = model.backbone.embeddings.word_embeddings.weight.detach().clone()
    tuner = Finetuner(model, schedule, callbacks=[changes], progress=False, lr=1e-2, batch_size=8, epochs=2,
                      warmup_ratio=0.0)
    assert tuner.plan.spec == "warm-up" and not block3.requires_grad
    before3 = block3.detach().clone()
    result = tuner.fit(toy_dataset(n=40), toy_dataset(n=16, seed=1))
    assert changes.seen == [(None, "warm-up", True), ("warm-up", "top-2", True)]
    # asked once when the Finetuner is built, then before every step; it sees the last loss
    assert schedule.asked[:2] == [(0, 0, False), (0, 0, False)] and schedule.asked[4] == (3, 0, True)
    # not step-determined: its plans are not read ahead, each boundary is cached when it is reached
    assert result.plan.spec == "top-2" and result.costs["cache"].startswith("on: per boundary")
    assert not torch.equal(before3, block3) and block3 in tuner.optimizer.state
    assert torch.equal(embeddings, model.backbone.embeddings.word_embeddings.weight)


def test_measuring_strategies_get_their_sample_explicitly():
    model = tiny_classifier()
    with pytest.raises(FreezetuneError, match="scores the model on labelled data: pass a sample"):
        Finetuner(model, "auto:gradient:budget=1", progress=False)
    tuner = Finetuner(model, "auto:semantic:budget=1", sample=toy_dataset(n=40), progress=False)
    assert len(tuner.plan.blocks) == 1 and tuner.selections and "chosen: blocks" in tuner.selections[0]["explanation"]
    assert tuner.plan.spec == "auto:semantic:budget=1"
    # a data set as the sample also tells the gradient scorers how many rows train: 40 random rows support no block
    tuner = Finetuner(model, "auto:gradient:budget=1", sample=toy_dataset(n=40), progress=False)
    assert tuner.plan.lora is not None and "the 40 training rows" in tuner.selections[0]["explanation"]


def test_the_training_layer_refuses_to_resolve_auto_itself():
    from freezetune.training.finetuner import Finetuner as TrainingFinetuner

    with pytest.raises(FreezetuneError, match="measures the model to choose a plan"):
        TrainingFinetuner(tiny_classifier(), "auto")


def test_callbacks_follow_the_protocol():
    class Duck:
        def on_step_end(self, tuner, record):
            pass

    with pytest.raises(TypeError, match="subclass freezetune.Callback"):
        Finetuner(tiny_classifier(), "head_only", callbacks=[Duck()])
