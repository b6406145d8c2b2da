"""The Finetuner on tiny models: frozen stays frozen, gradients stop at the prefix, it learns."""

import pytest
import torch

from conftest import tiny_classifier, toy_batches
from freezetune.core.errors import FreezetuneError
from freezetune.core.layout import frozen_state
from freezetune.core.plan import Plan
from freezetune.strategies.lr_policy import default_lr
from freezetune.training.finetuner import Finetuner
from tolerances import forward_atol, trained_atol


def quiet(**kw):
    return dict(progress=False, **kw)


def test_frozen_parameters_are_bit_identical_after_training():
    model = tiny_classifier()
    tuner = Finetuner(model, "lower_half", **quiet(lr=1e-2, epochs=2))
    before = frozen_state(model)
    trained_before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    tuner.fit(toy_batches())
    assert before and all(torch.equal(p, before[n]) for n, p in model.named_parameters() if n in before)
    changed = [n for n, p in model.named_parameters() if n in trained_before and not torch.equal(p, trained_before[n])]
    assert any(n.startswith("backbone.encoder.layer.3.") for n in changed)
    assert "classifier.weight" in changed


def test_no_gradient_reaches_the_frozen_prefix():
    model = tiny_classifier()
    tuner = Finetuner(model, "top_k:1", **quiet())
    boundary_inputs = []
    handle = model.backbone.encoder.layer[3].register_forward_pre_hook(
        lambda module, args: boundary_inputs.append(args[0])
    )
    batch = dict(toy_batches()[0])
    labels = batch.pop("labels")
    torch.nn.functional.cross_entropy(tuner.forward(batch), labels).backward()
    handle.remove()
    assert not boundary_inputs[0].requires_grad  # autograd recorded nothing below block 3
    for name, param in model.named_parameters():
        if not param.requires_grad:
            assert param.grad is None, name
    assert model.backbone.encoder.layer[3].attention.self.query.weight.grad is not None


def test_frozen_prefix_runs_in_eval_mode_and_suffix_in_train_mode():
    model = tiny_classifier()
    tuner = Finetuner(model, "top_k:2", **quiet())
    tuner.set_modes(True)
    blocks = model.backbone.encoder.layer
    assert not model.backbone.embeddings.dropout.training
    assert not blocks[0].training and not blocks[1].training
    assert blocks[2].training and blocks[3].training and model.dropout.training


def test_it_learns_the_toy_task():
    model = tiny_classifier()
    data = toy_batches(n=96)
    tuner = Finetuner(model, "full", **quiet(lr=3e-3, epochs=15, warmup_ratio=0.0))
    before = tuner.evaluate(data)
    result = tuner.fit(data, data)
    assert result.best_metrics["accuracy"] > before["accuracy"] + 0.2
    assert result.best_metrics["loss"] < before["loss"]
    assert result.costs["steps"] == 15 * 12
    assert result.costs["trainable_params"] == 39651
    assert result.costs["peak_memory_bytes"] > 0
    assert len(result.costs["epoch_times_s"]) == 15


def test_gradient_accumulation_matches_a_big_batch():
    def one_step(batches, accum):
        model = tiny_classifier()
        model.eval()
        tuner = Finetuner(model, "full", **quiet(optimizer="sgd", momentum=0.0, lr=0.5, grad_accum=accum,
                                                   max_steps=1, warmup_ratio=0, max_grad_norm=None))
        tuner.set_modes = lambda training=True: model.eval()  # no dropout: compare exactly
        tuner.fit(batches)
        # SGD: Adam's first step is ~lr * sign(g), which amplifies rounding noise near g = 0
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    big = toy_batches(n=8)
    halves = [{k: v[:4] for k, v in big[0].items()}, {k: v[4:] for k, v in big[0].items()}]
    assert torch.allclose(one_step(big, 1), one_step(halves, 2), atol=trained_atol(1), rtol=0)


def test_lr_multipliers_reach_the_optimizer():
    model = tiny_classifier()
    tuner = Finetuner(model, "lower_half:lr_decay=2", **quiet(lr=1e-3))
    lrs = {g["unit"]: g["base_lr"] for g in tuner.optimizer.param_groups}
    assert lrs["block.3"] == pytest.approx(1e-3)
    assert lrs["block.2"] == pytest.approx(5e-4)
    assert lrs["head"] == pytest.approx(1e-3)
    no_decay = [g for g in tuner.optimizer.param_groups if g["weight_decay"] == 0.0]
    assert no_decay  # biases and norms are not decayed


def test_default_learning_rates_follow_the_evidence():
    from freezetune.core.layout import LayerMap
    from freezetune.strategies.registry import resolve

    layers = LayerMap.from_model(tiny_classifier(num_blocks=6))
    rates = {s: default_lr(resolve(s, layers), layers) for s in ("full", "lower_half", "top_k:2", "head_only", "bias")}
    assert rates == {"full": 1e-4, "lower_half": 1e-4, "top_k:2": 3e-4, "head_only": 3e-3, "bias": 1e-3}


def test_early_stopping_and_best_model_kept():
    model = tiny_classifier()
    data = toy_batches()
    tuner = Finetuner(model, "head_only", **quiet(lr=1e-9, epochs=10, patience=2))
    result = tuner.fit(data, data)
    assert result.stopped_early
    assert len(result.history) == 3  # first eval sets the best, two more without improvement
    assert result.best_step == result.history[0]["step"]


def test_eval_every_n_steps_and_max_steps():
    tuner = Finetuner(tiny_classifier(), "top_k:1", **quiet(max_steps=7, eval_every=3))
    result = tuner.fit(toy_batches(), toy_batches())
    assert result.costs["steps"] == 7
    assert [h["step"] for h in result.history] == [3, 6]


def test_sgd_optimizer_trains():
    model = tiny_classifier()
    tuner = Finetuner(model, "head_only", **quiet(optimizer="sgd", lr=0.1, epochs=1))
    assert isinstance(tuner.optimizer, torch.optim.SGD)
    before = model.classifier.weight.detach().clone()
    tuner.fit(toy_batches())
    assert not torch.equal(before, model.classifier.weight)


class SwitchAt:
    """A schedule that moves from one plan to another at a given step."""

    def __init__(self, first, second, step):
        self.first, self.second, self.step = first, second, step

    def plan_at(self, step, epoch, observations):
        return self.second if step >= self.step else self.first


def test_plan_change_frees_state_and_new_units_really_update():
    model = tiny_classifier()
    block3 = model.backbone.encoder.layer[3].attention.self.query.weight
    block2 = model.backbone.encoder.layer[2].attention.self.query.weight
    schedule = SwitchAt(Plan(blocks=(3,), spec="top_k:1"), Plan(blocks=(2,), spec="layers:2"), step=3)
    tuner = Finetuner(model, schedule, **quiet(lr=1e-2, max_steps=6, warmup_ratio=0))
    before2 = block2.detach().clone()
    tuner.fit(toy_batches())
    assert tuner.plan.blocks == (2,)
    assert block3 not in tuner.optimizer.state  # frozen again: its Adam moments are gone
    assert block2 in tuner.optimizer.state and not torch.equal(before2, block2)
    assert not block3.requires_grad and block2.requires_grad


def test_freeze_pattern_alias_and_config_validation():
    tuner = Finetuner(tiny_classifier(), freeze_pattern="alternate", progress=False)
    assert tuner.plan.blocks == (1, 3)
    with pytest.raises(FreezetuneError, match="--batch-size must be at least 1"):
        Finetuner(tiny_classifier(), "full", batch_size=0)
    with pytest.raises(TypeError):
        Finetuner(tiny_classifier(), "full", no_such_option=1)


def test_gradient_checkpointing_covers_only_the_trainable_suffix():
    def grads(checkpointing):
        model = tiny_classifier()
        model.eval()  # no dropout: the two runs must agree exactly
        tuner = Finetuner(model, "top_k:2", progress=False, gradient_checkpointing=checkpointing)
        batch = dict(toy_batches()[0])
        labels = batch.pop("labels")
        torch.nn.functional.cross_entropy(tuner.forward(batch), labels).backward()
        blocks = model.backbone.encoder.layer
        wrapped = ["_unwrapped_forward" in vars(b) for b in blocks]
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}, wrapped

    plain, wrapped_plain = grads(False)
    checkpointed, wrapped = grads(True)
    assert wrapped == [False, False, True, True] and not any(wrapped_plain)
    assert plain.keys() == checkpointed.keys()
    assert all(torch.allclose(plain[n], checkpointed[n], atol=forward_atol(), rtol=0) for n in plain)  # a recompute
    assert not any(n.startswith("backbone.encoder.layer.1.") for n in checkpointed)
