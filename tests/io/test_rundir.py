"""rundir.py: refusing to clobber, lazy creation, careful --overwrite, atomic writes."""

import json
import os
import shutil

import pytest
import yaml

from freezetune.core.errors import FreezetuneError
from freezetune.io.rundir import RunDir, is_run


def make_run(path):
    rd = RunDir.create(path)
    rd.write_yaml("config.yaml", {"model": "tiny", "lr": 1e-3})
    rd.write_json("metrics.json", {"accuracy": 0.9})
    rd.write_text("checkpoint/weights.txt", "w")
    return rd


def test_create_is_lazy_and_first_write_makes_the_folder(tmp_path):
    path = tmp_path / "runs" / "x"
    rd = RunDir.create(path)
    assert not path.exists() and not (tmp_path / "runs").exists()
    assert rd.path == path and rd.file("plots/a.png") == path / "plots" / "a.png"
    rd.write_yaml("config.yaml", {"a": 1})
    assert yaml.safe_load((path / "config.yaml").read_text()) == {"a": 1}
    assert is_run(path)


def test_existing_run_is_refused_with_a_fix(tmp_path):
    make_run(tmp_path / "x")
    with pytest.raises(FreezetuneError, match=r"already holds a run; pass --overwrite"):
        RunDir.create(tmp_path / "x")


@pytest.mark.parametrize("marker", ["config.yaml", "metrics.json", "metrics.jsonl"])
def test_any_marker_file_makes_a_run(tmp_path, marker):
    (tmp_path / marker).write_text("{}")
    assert is_run(tmp_path)
    with pytest.raises(FreezetuneError, match="already holds a run"):
        RunDir.create(tmp_path)


def test_foreign_non_empty_folder_is_refused_but_empty_one_is_fine(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    assert not is_run(tmp_path)
    with pytest.raises(FreezetuneError, match="not a freezetune run"):
        RunDir.create(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    RunDir.create(empty).write_json("metrics.json", {})
    assert is_run(empty)


def test_file_paths_are_refused(tmp_path):
    f = tmp_path / "afile"
    f.write_text("x")
    with pytest.raises(FreezetuneError, match="is a file"):
        RunDir.create(f)
    with pytest.raises(FreezetuneError, match="is a file"):
        RunDir.create(f / "sub" / "run")


def test_overwrite_removes_only_freezetune_files_and_only_at_first_write(tmp_path):
    path = tmp_path / "x"
    make_run(path)
    (path / "metrics.jsonl").write_text('{"step": 1}\n')
    for d in ("best", "plots", "tensorboard"):
        (path / d).mkdir()
        (path / d / "f").write_text("old")
    (path / "my_notes.md").write_text("keep me")
    (path / "data").mkdir()
    (path / "data" / "train.csv").write_text("text,label\n")

    rd = RunDir.create(path, overwrite=True)
    # Validation elsewhere could still fail: the old run must be intact until we write.
    assert (path / "config.yaml").exists() and (path / "checkpoint").exists()

    rd.append_metrics({"step": 0, "loss": 1.0})
    names = sorted(p.name for p in path.iterdir())
    assert names == [".lock", "data", "metrics.jsonl", "my_notes.md"]  # the lock is never removed: it is held
    assert (path / "my_notes.md").read_text() == "keep me"
    assert (path / "data" / "train.csv").exists()
    assert len((path / "metrics.jsonl").read_text().splitlines()) == 1  # old lines gone


def test_overwrite_removes_a_symlinked_folder_as_a_link_only(tmp_path):
    elsewhere = tmp_path / "precious"
    elsewhere.mkdir()
    (elsewhere / "keep").write_text("x")
    path = tmp_path / "run"
    make_run(path)
    shutil.rmtree(path / "checkpoint")
    (path / "checkpoint").symlink_to(elsewhere, target_is_directory=True)
    RunDir.create(path, overwrite=True).write_json("metrics.json", {})
    assert not (path / "checkpoint").exists()
    assert (elsewhere / "keep").exists()


def test_overwrite_into_foreign_folder_keeps_its_files(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    RunDir.create(tmp_path, overwrite=True).write_json("metrics.json", {"a": 1})
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_atomic_writes_leave_no_temp_files_and_replace_content(tmp_path):
    rd = RunDir.create(tmp_path / "r")
    rd.write_json("metrics.json", {"accuracy": 0.5})
    rd.write_json("metrics.json", {"accuracy": 0.75})
    rd.write_text("best/README.txt", "best checkpoint")
    all_files = sorted(str(p.relative_to(rd.path)) for p in rd.path.rglob("*") if p.is_file())
    assert all_files == [".lock", "best/README.txt", "metrics.json"]
    assert json.loads(rd.file("metrics.json").read_text()) == {"accuracy": 0.75}


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path):
    rd = RunDir.create(tmp_path / "r")
    rd.write_json("metrics.json", {"ok": True})
    with pytest.raises(TypeError):
        rd.write_json("metrics.json", {"bad": object()})
    assert json.loads(rd.file("metrics.json").read_text()) == {"ok": True}
    assert sorted(os.listdir(rd.path)) == [".lock", "metrics.json"]


def test_metrics_jsonl_lines_parse_and_carry_time(tmp_path):
    import numpy as np
    import torch

    rd = RunDir.create(tmp_path / "r")
    rd.append_metrics({"step": 1, "loss": torch.tensor(0.5)})
    rd.append_metrics({"step": 2, "loss": np.float32(0.25), "split": "validation"})
    records = [json.loads(line) for line in rd.file("metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    assert records[0]["loss"] == 0.5 and records[1]["loss"] == 0.25
    assert all(isinstance(r["time"], float) and r["time"] >= 0 for r in records)
    assert records[0]["time"] <= records[1]["time"]


def test_file_names_cannot_escape_the_run(tmp_path):
    rd = RunDir.create(tmp_path / "r")
    with pytest.raises(ValueError):
        rd.file("../outside.txt")
    with pytest.raises(ValueError):
        rd.write_text("/etc/passwd", "no")
