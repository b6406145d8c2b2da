"""--report-to tensorboard: scalars in RUN/tensorboard/, or one clear line when the package is missing."""

from types import SimpleNamespace

import pytest

from freezetune.core.config import TrainConfig
from freezetune.core.errors import FreezetuneError
from freezetune.runs import tensorboard_log
from freezetune.runs.tensorboard_log import TensorBoardLogger, check_report_to


def test_missing_package_is_one_line_saying_how_to_install_it(monkeypatch):
    monkeypatch.setattr(tensorboard_log.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FreezetuneError, match=r"pip install tensorboard"):
        check_report_to(TrainConfig(report_to="tensorboard"), "runs/x")
    check_report_to(TrainConfig(), None)  # the default reports nowhere and needs nothing


def test_tensorboard_needs_a_run_folder():
    pytest.importorskip("tensorboard")
    with pytest.raises(FreezetuneError, match="give --output"):
        check_report_to(TrainConfig(report_to="tensorboard"), None)


def test_scalars_land_in_the_run_folder(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tuner = SimpleNamespace(task=SimpleNamespace(directions={"accuracy": "max", "loss": "min"}))
    logger = TensorBoardLogger(tmp_path)
    logger.on_fit_start(tuner)
    for step, loss in ((1, 0.9), (2, 0.7)):
        logger.on_step_end(tuner, {"step": step, "epoch": 0, "loss": loss, "lr": 1e-4})
    logger.on_evaluate(tuner, {"step": 2, "epoch": 0, "accuracy": 0.75, "loss": 0.6, "n": 8, "per_class": {}})
    logger.on_fit_end(tuner, None)
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert sorted(events.Tags()["scalars"]) == ["eval/accuracy", "eval/loss", "train/loss", "train/lr"]
    assert [(e.step, round(e.value, 4)) for e in events.Scalars("train/loss")] == [(1, 0.9), (2, 0.7)]
    assert [(e.step, e.value) for e in events.Scalars("eval/accuracy")] == [(2, 0.75)]
