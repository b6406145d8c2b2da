"""Resuming an interrupted run reaches the same final weights, bit for bit, on a CPU."""

import pytest
import torch

from conftest import StopAt, tiny_classifier, toy_dataset
from freezetune.core.errors import FreezetuneError
from freezetune.core.plan import Plan
from freezetune.runs.finetuner import Finetuner
from freezetune.training.resume import load_state


def train(tmp_path, stop_at=None, resume=False, **options):
    settings = dict(progress=False, lr=3e-3, epochs=3, batch_size=8, save_every=2, **options)
    model = tiny_classifier()
    callbacks = [StopAt(stop_at)] if stop_at else []
    tuner = Finetuner(model, settings.pop("strategy", "lower_half"), state_dir=str(tmp_path / "state"),
                      state_key=sorted(settings.items()), callbacks=callbacks, **settings)
    train_data, eval_data = toy_dataset(n=40, pairs=True), toy_dataset(n=16, seed=1)
    saved = load_state(tmp_path / "state") if resume else None
    result = tuner.fit(train_data, eval_data, resume=saved)
    return {n: p.detach().clone() for n, p in model.named_parameters()}, result


RGN = Plan(blocks=(0, 1, 2, 3), embeddings=True, lr_rescale="rgn", spec="auto_rgn")


# Phases of 5 steps (one pass) are cached per boundary: stored in one pass (top-down) or advanced (bottom-up).
SCHEDULES = [{"strategy": "lift:steps=2"}, {"strategy": "lift:steps=5"}, {"strategy": "lift:order=bottom_up:steps=5"},
             {"strategy": "lisa:1:interval=3"}, {"strategy": "hft:steps=3"}, {"strategy": "gradual_unfreeze:steps=2"},
             {"strategy": "autofreeze:interval=2:tolerance=0.5"}]


@pytest.mark.parametrize("options", [{"bucket": True}, {"strategy": "full", "grad_accum": 2, "cache": "off"},
                                     {"keep_best": False, "eval_every": 3}, {"strategy": RGN}, *SCHEDULES])
# 5 batches per epoch: stop before the end-of-epoch save (resume mid-epoch from step 4), or just after it
@pytest.mark.parametrize("stop_at", [5, 6])
def test_resume_is_bit_identical(tmp_path, options, stop_at):
    reference, full_run = train(tmp_path / "a", **options)
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path / "b", stop_at=stop_at, **options)
    resumed, result = train(tmp_path / "b", resume=True, **options)
    assert reference.keys() == resumed.keys()
    assert all(torch.equal(reference[n], resumed[n]) for n in reference)
    assert result.costs["steps"] == full_run.costs["steps"]
    assert [h["step"] for h in result.history] == [h["step"] for h in full_run.history]


def test_resume_with_changed_config_is_refused(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path, stop_at=3)
    with pytest.raises(FreezetuneError, match="different configuration"):
        train(tmp_path, resume=True, weight_decay=0.1)


def test_corrupted_or_missing_state_is_a_clear_error(tmp_path):
    with pytest.raises(FreezetuneError, match="holds no resumable state"):
        load_state(tmp_path)
    (tmp_path / "state.json").write_text("not json")
    with pytest.raises(FreezetuneError, match="corrupted"):
        load_state(tmp_path)
