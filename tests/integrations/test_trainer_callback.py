"""FreezetuneCallback under the real transformers.Trainer, against freezetune's own loop.

Both sides train copies of one tiny Llama on the same batches in the same order (sequential
sampler, no padding), with the same AdamW (fp32, weight decay 0.01 on the same tensors), the same
linear schedule without warm-up and no clipping. The schedules are pure functions of the step (and
AutoFreeze of the measured gradients), so the trainable set must be the same at every step, and
the weights may differ only by rounding: the two losses reduce the same token losses differently
(HF's sum / token count against freezetune's mean over the packed target logits), a few fp32
epsilons per step that Adam carries into every update, so the bound is ``trained_atol(steps)``.
"""

from __future__ import annotations

import pytest
import torch

from conftest import tiny_decoder
from freezetune.core.causal_lm import CausalLM
from freezetune.integrations.trainer_callback import FreezetuneCallback
from freezetune.tasks.causal_lm import CausalLanguageModeling
from freezetune.training.callbacks import Callback
from freezetune.training.finetuner import Finetuner
from tolerances import trained_atol

transformers = pytest.importorskip("transformers")

ROWS, LENGTH, BATCH, EPOCHS, LR = 32, 10, 8, 2, 3e-3
STEPS = ROWS // BATCH * EPOCHS
SCHEDULES = ["lift:steps=2", "lift:order=bottom_up:steps=3", "gradual_unfreeze:steps=2", "lisa:gamma=2:interval=2",
             "hft:steps=3", "hft", "autofreeze:interval=2:tolerance=10"]


def rows(seed: int = 0) -> dict[str, list]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 40, (ROWS, LENGTH), generator=g)
    labels = ids.clone()
    labels[:, 0] = -100  # the first token predicts nothing: both losses count the same targets
    return {"input_ids": ids.tolist(), "attention_mask": [[1] * LENGTH] * ROWS, "labels": labels.tolist()}


def trainer_args(tmp_path, **overrides):
    settings = dict(output_dir=str(tmp_path), per_device_train_batch_size=BATCH, num_train_epochs=EPOCHS,
                    learning_rate=LR, weight_decay=0.01, warmup_steps=0, lr_scheduler_type="linear", max_grad_norm=0,
                    train_sampling_strategy="sequential", report_to=[], save_strategy="no", use_cpu=True,
                    disable_tqdm=True, logging_steps=1, seed=0, optim="adamw_torch")
    return transformers.TrainingArguments(**{**settings, **overrides})


class TrainableSets(transformers.TrainerCallback):
    """After FreezetuneCallback: per step, the names that train; frozen tensors checked bit-identical across it."""

    def __init__(self):
        self.per_step, self.frozen_moved, self.before, self.logs = [], [], {}, []

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        self.before = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.per_step.append(sorted(n for n, p in model.named_parameters() if p.requires_grad))

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):
        params = dict(model.named_parameters())
        self.frozen_moved += [n for n, value in self.before.items() if not torch.equal(params[n].detach(), value)]

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append({**logs, "step": state.global_step})


def callback_logs(trainer) -> list[dict]:
    recorder = next(c for c in trainer.callback_handler.callbacks if isinstance(c, TrainableSets))
    return recorder.logs


class LoopSets(Callback):
    def __init__(self):
        self.per_step = []

    def before_optimizer_step(self, tuner):
        prefix = "backbone."
        self.per_step.append(sorted(n[len(prefix):] for n, p in tuner.model.named_parameters() if p.requires_grad))


def train_with_trainer(tmp_path, spec, **overrides):
    import datasets

    lm = tiny_decoder()
    initial = {n: p.detach().clone() for n, p in lm.named_parameters()}
    callback, recorder = FreezetuneCallback(spec), TrainableSets()
    trainer = transformers.Trainer(lm, trainer_args(tmp_path, **overrides),
                                   train_dataset=datasets.Dataset.from_dict(rows()),
                                   data_collator=transformers.default_data_collator, callbacks=[callback, recorder])
    trainer.train()
    return lm, initial, callback, recorder, trainer


def train_with_loop(spec):
    data = rows()
    batches = [{k: torch.tensor(v[i:i + BATCH]) for k, v in data.items()} for i in range(0, ROWS, BATCH)]
    model = CausalLM(tiny_decoder())
    recorder = LoopSets()
    tuner = Finetuner(model, spec, task=CausalLanguageModeling(), callbacks=[recorder], lr=LR, epochs=EPOCHS,
                      batch_size=BATCH, warmup_ratio=0.0, max_grad_norm=None, weight_decay=0.01, cache="off",
                      progress=False, keep_best=False)
    tuner.fit(batches)
    return model.backbone, recorder


@pytest.mark.parametrize("spec", SCHEDULES)
def test_a_schedule_under_trainer_trains_what_freezetunes_loop_trains(tmp_path, spec):
    lm, initial, callback, recorder, _ = train_with_trainer(tmp_path, spec)
    reference, loop = train_with_loop(spec)
    assert len(recorder.per_step) == len(loop.per_step) == STEPS
    for step, (ours, theirs) in enumerate(zip(recorder.per_step, loop.per_step)):
        assert ours == theirs, f"step {step}"
    assert recorder.frozen_moved == []  # a frozen tensor never moves in a step it is frozen (torch.equal)
    never = {n for n in initial if not any(n in names for names in recorder.per_step)}
    params = dict(lm.named_parameters())
    assert all(torch.equal(params[n].detach(), initial[n]) for n in never)
    theirs = dict(reference.named_parameters())
    worst = max(float((params[n] - theirs[n]).detach().abs().max()) for n in params)
    assert worst <= trained_atol(STEPS), worst
    moved = max(float((params[n].detach() - initial[n]).abs().max()) for n in params)
    assert moved > 100 * trained_atol(STEPS)  # the runs trained: the bound is far below what training moved


def test_a_static_plan_puts_exactly_its_tensors_in_the_optimizer(tmp_path):
    lm, initial, callback, recorder, trainer = train_with_trainer(tmp_path, "top_k:2")
    expected = sorted(n for n in initial
                      if n.startswith(("model.layers.2.", "model.layers.3.")) or n == "model.norm.weight")
    assert recorder.per_step == [expected] * STEPS
    in_optimizer = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    params = dict(lm.named_parameters())
    assert {n for n, p in params.items() if id(p) in in_optimizer} == set(expected)
    assert sum(p.numel() for n, p in params.items() if n in expected) == 2 * 2336 + 16  # two blocks, the norm


def test_lisa_keeps_every_block_it_draws_in_the_optimizer_and_drops_the_state_of_frozen_ones(tmp_path):
    class StateOf(transformers.TrainerCallback):
        def __init__(self):
            self.stateful = []

        def on_step_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
            names = {id(p): n for n, p in model.named_parameters()}
            frozen_with_state = [names[id(p)] for p in optimizer.state if not p.requires_grad]
            self.stateful.append(frozen_with_state)

    import datasets

    lm = tiny_decoder()
    state_of = StateOf()
    trainer = transformers.Trainer(lm, trainer_args(tmp_path), train_dataset=datasets.Dataset.from_dict(rows()),
                                   data_collator=transformers.default_data_collator,
                                   callbacks=[FreezetuneCallback("lisa:gamma=1:interval=1"), state_of])
    trainer.train()
    assert state_of.stateful == [[]] * STEPS  # no frozen tensor holds optimizer state at any step
    in_optimizer = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert len(in_optimizer) == len(list(lm.parameters()))  # every block was drawn at some step: all are in it


def test_gradual_unfreezing_keeps_its_discriminative_rates(tmp_path):
    lm, *_, trainer = train_with_trainer(tmp_path, "gradual_unfreeze:steps=2")
    # 8 steps, a stage every 2: blocks 3, 2 and 1 open (block 0 never does, so it is not in the optimizer)
    names = {id(p): n for n, p in lm.named_parameters()}
    rates = {}
    for group in trainer.optimizer.param_groups:
        for param in group["params"]:
            rates.setdefault(round(group["initial_lr"] / LR, 6), set()).add(names[id(param)].split(".")[2])
    assert rates == {1.0: {"3", "weight"}, round(1 / 2.6, 6): {"2"}, round(1 / 2.6 ** 2, 6): {"1"}}


def test_plan_changes_reach_the_trainers_logs(tmp_path):
    *_, trainer = train_with_trainer(tmp_path, "lift:steps=2")
    entries = [e for e in trainer.state.log_history if "freezetune/plan" in e]
    assert [(e["step"], e["freezetune/trains"]) for e in entries] == [
        (0, "block 3, head"), (2, "block 2, head"), (4, "block 1, head"), (6, "block 0, head")]
    # the entry logged after each change names it too, for the console and the callbacks after this one
    assert [(e["step"], e["freezetune/trains"]) for e in callback_logs(trainer) if "freezetune/trains" in e] == [
        (1, "block 3, head"), (3, "block 2, head"), (5, "block 1, head"), (7, "block 0, head")]


def test_plan_changes_reach_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train_with_trainer(tmp_path, "lift:steps=2", report_to=["tensorboard"])
    folder = tmp_path / "runs" / "freezetune"
    events = EventAccumulator(str(folder))
    events.Reload()
    top = [(e.step, e.value) for e in events.Scalars("freezetune/block_03")]
    assert top == [(0, 1.0), (2, 0.0), (4, 0.0), (6, 0.0)]


def test_the_frozen_prefix_runs_in_eval_mode_under_trainer(tmp_path):
    import datasets

    from conftest import tiny_gpt2

    lm = tiny_gpt2()
    modes = []
    lm.transformer.h[0].register_forward_pre_hook(lambda module, args: modes.append(module.training))
    lm.transformer.h[2].register_forward_pre_hook(lambda module, args: modes.append(module.training))
    data = rows()
    data = {k: [row[:8] for row in v] for k, v in data.items()}
    trainer = transformers.Trainer(lm, trainer_args(tmp_path, num_train_epochs=1),
                                   train_dataset=datasets.Dataset.from_dict(data),
                                   data_collator=transformers.default_data_collator,
                                   callbacks=[FreezetuneCallback("top_k:1")])
    trainer.train()
    assert modes == [False, True] * (ROWS // BATCH)  # block 0 frozen (eval, no dropout), block 2 trains
