"""Faults injected into `freezetune train`: signals, kill -9, a full disk, a NaN loss; resume ends bit-identical."""

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

import freezetune
from conftest import FAST
from freezetune.cli.main import main
from freezetune.training.loop import Loop

# `python -m freezetune.cli.main`, with each optimizer step slowed down so a signal lands mid-run.
SLOW_MAIN = """
import sys, time
from freezetune.training.loop import Loop
step = Loop.optimizer_step
Loop.optimizer_step = lambda self, n: (time.sleep(0.05), step(self, n))
from freezetune.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def args(model, data, output, *extra):
    # 2 rows per batch: ~26 steps per epoch, so step 10 is mid-way through the first epoch
    return ["train", "--model", str(model), "--data", str(data), "--output", str(output), *FAST,
            "--batch-size", "2", "--epochs", "2", "--strategy", "top_k:2", *extra]


def weights(run):
    from safetensors.torch import load_file

    return load_file(str(Path(run) / "checkpoint" / "trained.safetensors"))


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def start(argv):
    env = {**os.environ, "PYTHONPATH": str(Path(freezetune.__file__).parents[1])}
    return subprocess.Popen([sys.executable, "-c", SLOW_MAIN, *argv], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for(condition, process, timeout=240):
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)


def logged_step(run):
    lines = (run / "metrics.jsonl").read_text().splitlines() if (run / "metrics.jsonl").is_file() else []
    return max((json.loads(line)["step"] for line in lines if '"train"' in line), default=0)


@pytest.fixture
def reference(tiny_model_dir, sentiment_csv, tmp_path):
    assert main(args(tiny_model_dir, sentiment_csv, tmp_path / "whole")) == 0
    return weights(tmp_path / "whole")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_with_one_line_and_resume_finishes_bit_identical(tiny_model_dir, sentiment_csv, tmp_path,
                                                                       reference, signum, caplog):
    run = tmp_path / "cut"
    process = start(args(tiny_model_dir, sentiment_csv, run))
    wait_for(lambda: logged_step(run) >= 10, process)  # before the first epoch ends: nothing saved yet
    process.send_signal(signum)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signum  # 130 for SIGINT, 143 for SIGTERM
    lines = [line for line in err.splitlines() if line.startswith("freezetune:")]
    saved = json.loads((run / "resume" / "state.json").read_text())["tree"]
    assert lines == [f"freezetune: interrupted at step {saved['step']}; resume with: freezetune train --resume {run}"]
    assert saved["step"] >= 10 and saved["epoch"] == 0 and not (run / "metrics.json").exists()
    assert main(["train", "--resume", str(run)]) == 0
    assert f"resuming {run} from step {saved['step']} (epoch 1)" in caplog.text
    assert same(weights(run), reference)


def test_kill_9_loses_only_the_work_since_the_last_save(tiny_model_dir, sentiment_csv, tmp_path, reference, caplog):
    run = tmp_path / "killed"
    process = start(args(tiny_model_dir, sentiment_csv, run, "--save-every", "5"))
    wait_for(lambda: (run / "resume" / "state.json").is_file() and logged_step(run) >= 10, process)
    process.kill()
    process.communicate()
    assert process.returncode == -signal.SIGKILL
    saved = json.loads((run / "resume" / "state.json").read_text())["tree"]["step"]
    assert saved % 5 == 0 and saved >= 5  # a periodic save; the steps after it are lost
    assert main(["train", "--resume", str(run)]) == 0  # the dead process's lock file blocks nothing
    assert f"from step {saved} " in caplog.text
    assert same(weights(run), reference)


def interrupt_at(monkeypatch, step):
    """SIGINT to this process during optimizer step ``step`` (counted from 0 in each process)."""
    original = Loop.optimizer_step

    def step_then_signal(self, n):
        original(self, n)
        if n + 1 == step:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(Loop, "optimizer_step", step_then_signal)


# 4 rows per batch: 13 steps per epoch; step 3 comes before the first periodic save (5), step 17 mid-epoch 2
@pytest.mark.parametrize("stop_at", [3, 17])
@pytest.mark.parametrize("extra", [["--strategy", "gradual_unfreeze:steps=4"], ["--strategy", "lower_half",
                                                                               "--cache", "on"]])
def test_resume_through_the_cli_is_bit_identical_under_schedules_and_the_cache(
        tiny_model_dir, sentiment_csv, tmp_path, monkeypatch, capsys, extra, stop_at):
    run_args = [*args(tiny_model_dir, sentiment_csv, tmp_path / "x"), "--batch-size", "4", "--save-every", "5",
                *extra]
    assert main([*run_args[:-len(extra)], "--output", str(tmp_path / "whole"), *extra]) == 0
    with monkeypatch.context() as patch:
        interrupt_at(patch, stop_at)
        assert main(run_args) == 130
    assert f"interrupted at step {stop_at};" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path / "x")]) == 0
    assert same(weights(tmp_path / "x"), weights(tmp_path / "whole"))


def test_a_full_disk_fails_in_one_line_and_keeps_the_last_state(tiny_model_dir, sentiment_csv, tmp_path,
                                                                 monkeypatch, capsys):
    run = tmp_path / "full"
    state = run / "resume" / "state.json"
    real_fsync = os.fsync

    def fsync(fd):  # the disk fills up once the first periodic state is saved
        if state.is_file():
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", fsync)
        assert main(args(tiny_model_dir, sentiment_csv, run, "--save-every", "5")) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith("freezetune: error: cannot write ") and "no space left on device" in err[-1]
    from freezetune.training.resume import load_state

    saved = load_state(run / "resume")
    assert saved["step"] == 5 and len(list((run / "resume").iterdir())) == 2  # state.json + its tensors, no debris
    assert main(["train", "--resume", str(run)]) == 0  # space is back: the run goes on


def test_a_nan_loss_is_one_line_and_exit_2(tiny_model_dir, sentiment_csv, tmp_path, capsys):
    code = main(args(tiny_model_dir, sentiment_csv, tmp_path / "nan", "--lr", "1e30", "--save-every", "1"))
    err = capsys.readouterr().err.splitlines()
    assert code == 2 and "training diverged; lower --lr" in err[-1] and ("nan" in err[-1] or "inf" in err[-1])
    from freezetune.training.resume import load_state

    saved = load_state(tmp_path / "nan" / "resume")  # the last step before the NaN; its weights are finite
    assert all(torch.isfinite(t).all() for t in saved["trainable"].values())
    assert f"at step {saved['step'] + 1}:" in err[-1]


def test_the_saved_config_repeats_the_run_from_another_folder(tiny_model_dir, sentiment_csv, tmp_path, monkeypatch):
    first, elsewhere = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    elsewhere.mkdir()
    (first / "train.csv").write_bytes(Path(sentiment_csv).read_bytes())
    monkeypatch.chdir(first)
    assert main(["train", "--model", str(tiny_model_dir), "--data", "train.csv", "--test-data", "train.csv",
                 "--output", "run", *FAST]) == 0
    config = yaml.safe_load((first / "run" / "config.yaml").read_text())
    assert config["data"] == config["test_data"] == str(first / "train.csv") and config["output"] == str(first / "run")
    monkeypatch.chdir(elsewhere)
    assert main(["train", "--config", str(first / "run" / "config.yaml"), "--output", "again"]) == 0
    assert same(weights(first / "run"), weights(elsewhere / "again"))
