"""The command line: a real run's outputs (bad input: test_bad_input.py and test_bad_input_models.py)."""

import json
import subprocess
import sys

import pytest
import yaml

from conftest import FAST
from freezetune.cli.main import main


def run_cli(args, capsys):
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def train_args(model_dir, data, output, *extra):
    return ["train", "--model", str(model_dir), "--data", str(data), "--output", str(output), *FAST, *extra]


def test_train_writes_a_complete_run(tiny_model_dir, sentiment_csv, tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, _ = run_cli(train_args(tiny_model_dir, sentiment_csv, out, "--strategy", "top_k:2"), capsys)
    assert code == 0
    assert "top_k:2" in stdout and "validation numbers" in stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["reported_split"] == "validation"
    assert set(metrics["validation"]) >= {"accuracy", "macro_f1", "mcc", "per_class"}
    costs = metrics["costs"]
    # two tiny-BERT blocks (8,544 each) + CLS pooler (32*32+32; no 1_Pooling config) + 2-class classifier
    assert costs["trainable_params"] == 2 * 8544 + 1056 + 66
    for key in ("trainable_pct", "time_per_epoch_s", "steady_step_s", "peak_memory_bytes"):
        assert costs[key] > 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any(r["kind"] == "eval" for r in records)
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["strategy"] == "top_k:2" and config["pooling"] == "cls"
    assert config["lr"] == 1e-4  # half of the blocks train: the default rate for big plans
    assert json.loads((out / "plan.json").read_text())["blocks"] == [2, 3]


def test_a_data_parallel_rank_other_than_0_prints_nothing(tiny_model_dir, sentiment_csv, tmp_path, capsys,
                                                           monkeypatch):
    import freezetune.runs

    real = freezetune.runs.run_training

    def as_rank_1(spec, **kwargs):  # a second rank trains alike, but rank 0 reports for all
        result = real(spec, **kwargs)
        result.reports = False
        return result

    monkeypatch.setattr(freezetune.runs, "run_training", as_rank_1)
    code, stdout, _ = run_cli(train_args(tiny_model_dir, sentiment_csv, tmp_path / "run", "--strategy", "head_only"),
                              capsys)
    assert code == 0 and stdout == ""


def test_saved_config_reproduces_the_run(tiny_model_dir, sentiment_csv, tmp_path, capsys):
    first = tmp_path / "first"
    args = train_args(tiny_model_dir, sentiment_csv, first, "--strategy", "alternate",
                      "--test-data", str(sentiment_csv))
    assert main(args) == 0
    second = tmp_path / "second"
    assert main(["train", "--config", str(first / "config.yaml"), "--output", str(second)]) == 0
    capsys.readouterr()
    a = json.loads((first / "metrics.json").read_text())
    b = json.loads((second / "metrics.json").read_text())
    assert a["test"]["loss"] == pytest.approx(b["test"]["loss"], abs=1e-6)
    assert a["reported_split"] == "test"


def test_existing_run_is_not_overwritten(tiny_model_dir, sentiment_csv, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(train_args(tiny_model_dir, sentiment_csv, out, "--strategy", "head_only")) == 0
    before = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert "trained.safetensors" in before
    code, _, err = run_cli(train_args(tiny_model_dir, sentiment_csv, out, "--strategy", "full"), capsys)
    assert code == 2 and "already holds a run" in err and "--overwrite" in err
    assert {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert main(train_args(tiny_model_dir, sentiment_csv, out, "--strategy", "full", "--overwrite")) == 0
    assert json.loads((out / "plan.json").read_text())["embeddings"] is True


def test_strategies_and_help_document_everything(capsys):
    assert main(["strategies"]) == 0
    out = capsys.readouterr().out
    assert "top_k" in out and "bias" in out and "lora" in out
    result = subprocess.run([sys.executable, "-m", "freezetune.cli", "train", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for flag in ("--strategy", "--text-pair-column", "--encoding", "--lr", "--patience", "--overwrite", "--pooling"):
        assert flag in result.stdout
    assert "blocks 0,2,4" in result.stdout  # alternate's meaning is spelled out


def test_inspect_prints_units(tiny_model_dir, capsys):
    assert main(["inspect", "--model", tiny_model_dir, "--strategy", "alternate"]) == 0
    out = capsys.readouterr().out
    assert "block.3" in out and "frozen prefix depth: 1" in out


def test_compare_sweeps_reuses_finished_runs_and_picks_rates_on_validation(tiny_model_dir, sentiment_csv, tmp_path,
                                                                           capsys):
    out = tmp_path / "cmp"
    args = ["compare", "--model", tiny_model_dir, "--data", str(sentiment_csv), "--test-data", str(sentiment_csv),
            "--strategy", "head_only", "--strategy", "top_k:1", "--seeds", "2", "--lr-grid", "1e-3,1e-2",
            "--output", str(out), *FAST]
    assert main(args) == 0
    table = capsys.readouterr().out
    assert "head_only" in table and "top_k:1" in table and "test accuracy" in table
    result = json.loads((out / "results.json").read_text())
    rows = {r["strategy"]: r for r in result["rows"]}
    assert rows["head_only"]["seeds"] == 2 and rows["head_only"]["lrs_tried"] == [1e-3, 1e-2]
    assert rows["top_k:1"]["trainable_params"] == 8544 + 1056 + 66
    runs = sorted(p.name for p in (out / "runs").iterdir())
    assert len(runs) == 8  # 2 plans x 2 rates x 2 seeds
    stamps = {p: (out / "runs" / p / "metrics.json").stat().st_mtime_ns for p in runs}
    assert main(args) == 0  # everything is found and skipped
    assert {p: (out / "runs" / p / "metrics.json").stat().st_mtime_ns for p in runs} == stamps
    assert (out / "results.csv").read_text().startswith("strategy,accuracy,accuracy_std,headline_pm,")


def test_compare_shares_runs_between_sweeps_whatever_way_the_rate_was_asked(tiny_model_dir, sentiment_csv, tmp_path):
    store = tmp_path / "store"
    common = ["compare", "--model", tiny_model_dir, "--data", str(sentiment_csv), "--strategy", "head_only",
              "--seeds", "1", "--runs", str(store), *FAST]
    assert main([*common, "--lr-grid", "auto", "--output", str(tmp_path / "grid")]) == 0
    runs = sorted(p.name for p in store.iterdir())
    assert len(runs) == 3 and not (tmp_path / "grid" / "runs").exists()
    stamps = {p: (store / p / "metrics.json").stat().st_mtime_ns for p in runs}
    # the plan's default rate is the grid's middle rate: the same run, found and not retrained
    assert main([*common, "--output", str(tmp_path / "default")]) == 0
    assert sorted(p.name for p in store.iterdir()) == runs
    assert {p: (store / p / "metrics.json").stat().st_mtime_ns for p in runs} == stamps
    row = json.loads((tmp_path / "default" / "results.json").read_text())["rows"][0]
    assert row["lr"] == 3e-3 and row["lrs_tried"] == [3e-3]


def test_compare_rejects_a_bad_spec_before_training(tiny_model_dir, sentiment_csv, tmp_path, capsys):
    out = tmp_path / "cmp"
    code, _, err = run_cli(["compare", "--model", tiny_model_dir, "--data", str(sentiment_csv),
                            "--strategy", "full", "--strategy", "top_k:x", "--output", str(out), *FAST], capsys)
    assert code == 2 and "should be int" in err and not out.exists()


def test_train_then_predict_and_export(tiny_model_dir, sentiment_csv, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(train_args(tiny_model_dir, sentiment_csv, out, "--strategy", "top_k:1")) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 < metrics["costs"]["checkpoint_bytes"] < metrics["costs"]["full_model_bytes"] / 20
    predictions = tmp_path / "pred.csv"
    assert main(["predict", "--checkpoint", str(out), "--data", str(sentiment_csv), "--output", str(predictions)]) == 0
    import csv

    rows = list(csv.DictReader(predictions.open()))
    assert len(rows) == 64 and {r["prediction"] for r in rows} <= {"neg", "pos"}
    assert all(abs(float(r["prob_neg"]) + float(r["prob_pos"]) - 1) < 1e-5 for r in rows)
    hf = tmp_path / "hf"
    assert main(["export", "--checkpoint", str(out), "--to", str(hf)]) == 0
    from transformers import AutoModelForSequenceClassification

    exported = AutoModelForSequenceClassification.from_pretrained(hf)  # CLS pooling: the native class
    assert exported.config.id2label == {0: "neg", 1: "pos"}


def test_resume_an_interrupted_cli_run(tiny_model_dir, sentiment_csv, tmp_path, capsys, monkeypatch):
    from freezetune.training.loop import Loop

    args = train_args(tiny_model_dir, sentiment_csv, tmp_path / "whole", "--epochs", "3", "--strategy", "top_k:2",
                      "--retention", "cka", "--retention-limit", "8")
    assert main(args) == 0
    whole = json.loads((tmp_path / "whole" / "metrics.json").read_text())

    calls = {"n": 0}
    original = Loop.epoch

    def interrupted(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # killed during the second epoch
        return original(self, *a, **k)

    monkeypatch.setattr(Loop, "epoch", interrupted)
    cut = tmp_path / "cut"
    code, _, err = run_cli(train_args(tiny_model_dir, sentiment_csv, cut, "--epochs", "3", "--strategy", "top_k:2",
                                      "--retention", "cka", "--retention-limit", "8"), capsys)
    assert code == 130 and (cut / "resume" / "state.json").is_file() and not (cut / "metrics.json").exists()
    monkeypatch.setattr(Loop, "epoch", original)
    code, _, err = run_cli(["train", "--resume", str(cut), "--lr", "0.5"], capsys)
    assert code == 2 and "changed settings" in err
    assert main(["train", "--resume", str(cut)]) == 0
    resumed = json.loads((cut / "metrics.json").read_text())
    assert resumed["validation"]["loss"] == whole["validation"]["loss"]
    assert resumed["summary"]["retention_after"] == pytest.approx(whole["summary"]["retention_after"], abs=1e-6)
    assert not (cut / "resume").exists()


def test_retention_command_reports_before_after_change(tiny_model_dir, sentiment_csv, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(train_args(tiny_model_dir, sentiment_csv, out, "--strategy", "full", "--lr", "1e-2")) == 0
    capsys.readouterr()
    assert main(["retention", "--checkpoint", str(out), "--reference", "cka", "--limit", "12"]) == 0
    line = capsys.readouterr().out
    assert "retention (cka" in line and "before 1.0000" in line and "change -" in line


def test_auto_retention_floor_is_measured_at_every_evaluation_of_the_run(tiny_model_dir, sentiment_csv, tmp_path,
                                                                          capsys):
    out = tmp_path / "run"
    args = train_args(tiny_model_dir, sentiment_csv, out, "--strategy", "auto:retention=0.5", "--retention", "cka",
                      "--epochs", "2")
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    guard = metrics["costs"]["retention_guard"]
    assert guard["floor"] == 0.5 and 1 <= len(guard["evaluations"]) <= 2
    kept = [e["kept"] for e in guard["evaluations"]]
    assert all(0 < k <= 1 for k in kept)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["retention_kept"] for r in records if "retention_kept" in r] == kept
    assert "Retention floor 50%" in (out / "selection.txt").read_text()
    assert json.loads((out / "plan.json").read_text())["retention_floor"] == 0.5


def test_a_retention_floor_that_breaks_retrains_deeper_and_the_folder_holds_the_kept_attempt(
        tiny_model_dir, sentiment_csv, tmp_path, capsys):
    out = tmp_path / "run"  # at this rate every block that trains moves the CKA below 99 %: only head only holds
    # (the semantic scorer: on these 58 rows the gradient scorers' data support would choose LoRA, never deepened)
    args = train_args(tiny_model_dir, sentiment_csv, out, "--strategy", "auto:semantic:retention=0.99",
                      "--retention", "cka",
                      "--epochs", "2", "--lr", "0.3")
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    attempts = metrics["costs"]["retention_retries"]
    kept = [a for a in attempts if a["kept"]]
    assert len(kept) == 1 and attempts[0]["floor_broke"]
    depths = [int(a["plan"].split(":")[1]) for a in attempts]
    assert depths == list(range(depths[0], depths[0] + len(depths)))
    plan = json.loads((out / "plan.json").read_text())
    assert plan["blocks"] == list(range(int(kept[0]["plan"].split(":")[1]), 4))
    evals = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in evals if r.get("kind") == "eval"]
    assert evals and evals[0]["retention_kept"] >= 0.99 or kept[0]["floor_broke"]
    assert "trained again one block deeper" in (out / "selection.txt").read_text()
    assert metrics["summary"]["train_time_s"] >= sum(a["train_time_s"] for a in attempts) - 1e-6


def test_auto_strategy_scores_then_trains_and_explains(tiny_model_dir, sentiment_csv, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(train_args(tiny_model_dir, sentiment_csv, out, "--strategy", "auto:semantic:budget=2")) == 0
    plan = json.loads((out / "plan.json").read_text())
    assert len(plan["blocks"]) <= 2 and plan["blocks"] == sorted(plan["blocks"])
    assert plan["blocks"][-1] == 3  # contiguous suffix: ends at the top block
    assert "budget" in (out / "selection.txt").read_text()
    assert len(json.loads((out / "scores.json").read_text())["scores"]) == 4


def test_score_command_prints_a_table_and_writes_a_plot(tiny_model_dir, sentiment_csv, tmp_path, capsys):
    png = tmp_path / "scores.png"
    assert main(["score", "--model", tiny_model_dir, "--data", str(sentiment_csv), "--scorer", "semantic",
                 "--scorer", "gradient", "--samples", "32", "--plot", str(png), "--max-length", "16"]) == 0
    out = capsys.readouterr().out
    assert "semantic" in out and "gradient" in out and "block" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.png", "train.csv"]  # one figure, nothing else
    from matplotlib.image import imread

    assert imread(png).shape[:2] == (340, 780)  # two panels side by side, one per scorer


@pytest.mark.parametrize(
    "command", ["inspect", "strategies", "train", "compare", "predict", "export", "retention", "score"]
)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    assert "usage: freezetune " + command in capsys.readouterr().out


def test_inspecting_a_measuring_strategy_is_one_line_before_any_model_loads(capsys):
    code, out, err = run_cli(["inspect", "--model", "/no/such/model", "--strategy", "auto:gradient"], capsys)
    assert code == 2 and not out
    assert err.count("\n") == 1 and "chooses its plan from scores on your data" in err


def test_compare_takes_schedules_like_any_strategy(tiny_model_dir, sentiment_csv, tmp_path, capsys):
    out = tmp_path / "cmp"
    args = ["compare", "--model", tiny_model_dir, "--data", str(sentiment_csv), "--strategy", "lift:steps=2",
            "--strategy", "gradual_unfreeze:steps=2", "--seeds", "1", "--lr-grid", "auto", "--output", str(out), *FAST]
    assert main(args) == 0
    rows = {r["strategy"]: r for r in json.loads((out / "results.json").read_text())["rows"]}
    assert rows["lift:steps=2"]["lrs_tried"] == [1e-4, 3e-4, 9e-4]  # around the one-block default, 3e-4
    assert rows["gradual_unfreeze:steps=2"]["lrs_tried"] == [3.333e-05, 1e-4, 3e-4]  # its rate suits all blocks
