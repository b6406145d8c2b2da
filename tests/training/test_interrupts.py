"""SIGINT/SIGTERM stop a fit after the step in progress, with a resumable state; a NaN loss stops before the update."""

import json
import math
import os
import signal

import pytest
import torch

from conftest import tiny_classifier, toy_dataset
from freezetune.core.errors import FreezetuneError, Interrupted
from freezetune.runs.finetuner import Finetuner
from freezetune.training.callbacks import Callback
from freezetune.training.resume import load_state


class SignalAt(Callback):
    """Sends ``signum`` to this process right after optimizer step ``step``, as `kill` would."""

    def __init__(self, step, signum):
        self.step, self.signum = step, signum

    def on_step_end(self, tuner, record):
        if record["step"] == self.step:
            os.kill(os.getpid(), self.signum)


def fit(folder, callbacks=(), resume=False, **options):
    settings = dict(progress=False, lr=3e-3, epochs=2, batch_size=8, save_every=4, **options)
    model = tiny_classifier()
    tuner = Finetuner(model, "lower_half", state_dir=str(folder), state_key=sorted(settings.items()),
                      callbacks=list(callbacks), **settings)
    result = tuner.fit(toy_dataset(n=40, pairs=True), toy_dataset(n=16, seed=1),
                       resume=load_state(folder) if resume else None)
    return {n: p.detach().clone() for n, p in model.named_parameters()}, result


# 5 batches per epoch: mid-epoch before the first save, just after a periodic save, at the epoch's end
@pytest.mark.parametrize("stop_at,signum", [(3, signal.SIGINT), (4, signal.SIGTERM), (5, signal.SIGINT)])
def test_a_signal_saves_the_current_step_and_resume_is_bit_identical(tmp_path, stop_at, signum):
    reference, _ = fit(tmp_path / "a")
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted) as stopped:
        fit(tmp_path / "b", callbacks=[SignalAt(stop_at, signum)])
    assert (stopped.value.step, stopped.value.exit_code) == (stop_at, 128 + signum)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before  # handlers restored
    assert load_state(tmp_path / "b")["step"] == stop_at
    resumed, result = fit(tmp_path / "b", resume=True)
    assert all(torch.equal(reference[n], resumed[n]) for n in reference)
    assert result.costs["steps"] == 10


def test_a_resumed_run_adds_the_time_spent_before_the_interruption(tmp_path):
    with pytest.raises(Interrupted):
        fit(tmp_path, callbacks=[SignalAt(7, signal.SIGINT)])  # in the second epoch
    index = tmp_path / "state.json"
    saved = json.loads(index.read_text())
    assert len(saved["tree"]["elapsed"]["epoch_times_s"]) == 1 and saved["tree"]["elapsed"]["epoch_s"] > 0
    saved["tree"]["elapsed"] = {"train_time_s": 1000.0, "epoch_times_s": [100.0], "epoch_s": 50.0}
    index.write_text(json.dumps(saved))
    _, result = fit(tmp_path, resume=True)
    assert 1000.0 < result.costs["train_time_s"] < 1100.0
    assert result.costs["epoch_times_s"][0] == 100.0 and 50.0 < result.costs["epoch_times_s"][1] < 100.0


def test_a_nan_loss_stops_before_the_update_and_keeps_the_last_good_state(tmp_path, monkeypatch):
    from freezetune.tasks.classification import SequenceClassification

    original, calls = SequenceClassification.loss, {"n": 0}

    def poisoned(self, outputs, targets):
        calls["n"] += torch.is_grad_enabled()  # training batches only, not evaluation
        loss = original(self, outputs, targets)
        return loss * math.nan if calls["n"] == 6 else loss  # the 6th batch: step 6

    monkeypatch.setattr(SequenceClassification, "loss", poisoned)
    with pytest.raises(FreezetuneError, match=r"the loss is nan at step 6: .*lower --lr, set --max-grad-norm"):
        fit(tmp_path)
    saved = load_state(tmp_path)
    assert saved["step"] == 5  # the end-of-epoch save; nothing after it
    assert all(torch.isfinite(t).all() for t in saved["trainable"].values())


def test_grad_accumulation_catches_a_nan_in_any_accumulated_batch(tmp_path, monkeypatch):
    from freezetune.tasks.classification import SequenceClassification

    original, calls = SequenceClassification.loss, {"n": 0}

    def poisoned(self, outputs, targets):
        calls["n"] += torch.is_grad_enabled()  # training batches only, not evaluation
        loss = original(self, outputs, targets)
        return loss * math.inf if calls["n"] == 1 else loss  # the first of two accumulated batches

    monkeypatch.setattr(SequenceClassification, "loss", poisoned)
    with pytest.raises(FreezetuneError, match="the loss is inf at step 1"):
        fit(tmp_path, grad_accum=2)
    assert not (tmp_path / "state.json").exists()
