"""A sweep's evaluation sets: aggregated over seeds, and added to finished runs without retraining them."""

import csv
import json
import statistics

import pytest

from conftest import FAST
from freezetune.cli.main import main
from freezetune.runs import sweep as sweep_module


@pytest.fixture
def books(tmp_path):
    rows = [(f"the {w} book", "pos") for w in ("great", "lovely", "fine", "nice", "happy")]
    rows += [(f"the {w} book", "neg") for w in ("awful", "boring", "bad", "sad")]
    path = tmp_path / "books.csv"
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows([("text", "label"), *rows])
    return path


def compare(model_dir, data, out, *extra):
    return main(["compare", "--model", str(model_dir), "--data", str(data), "--strategy", "head_only",
                 "--strategy", "top_k:1", "--seeds", "2", "--output", str(out), *FAST, *extra])


def run_files(out):
    """Every file of every run folder, except the two that record scores, by path."""
    return {str(p.relative_to(out)): p.read_bytes() for p in (out / "runs").rglob("*")
            if p.is_file() and p.name not in ("metrics.json", "metrics.jsonl")}


def test_compare_aggregates_each_set_over_seeds(tiny_model_dir, sentiment_csv, books, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert compare(tiny_model_dir, sentiment_csv, out, "--ood-set", f"books={books}") == 0
    capsys.readouterr()
    rows = json.loads((out / "results.json").read_text())["rows"]
    for row in rows:
        runs = [json.loads(p.read_text()) for p in (out / "runs").glob(f"{row['strategy'].replace(':', '_')}-*/"
                                                                         "metrics.json")]
        assert len(runs) == 2 and all(r["eval_sets"]["books"]["rows"] == 9 for r in runs)
        expected = {"kind": "ood"}
        for metric in ("accuracy", "macro_f1", "mcc"):
            values = [r["eval_sets"]["books"][metric] for r in runs]
            expected[metric], expected[f"{metric}_std"] = statistics.fmean(values), statistics.stdev(values)
        assert row["eval_sets"] == {"books": pytest.approx(expected)}
    table = (out / "results.txt").read_text()
    books_acc = rows[0]["eval_sets"]["books"]
    assert "books (OOD) acc" in table.splitlines()[0]
    assert f"{books_acc['accuracy']:.3f} ± {books_acc['accuracy_std']:.3f}" in table.splitlines()[2]


def test_a_new_set_is_scored_on_the_kept_checkpoints_of_finished_runs(tiny_model_dir, sentiment_csv, books, tmp_path,
                                                                      capsys, monkeypatch):
    out = tmp_path / "cmp"
    assert compare(tiny_model_dir, sentiment_csv, out) == 0
    assert all(row["eval_sets"] == {} for row in json.loads((out / "results.json").read_text())["rows"])
    before = run_files(out)
    scores_before = {p.parent.name: json.loads(p.read_text()) for p in (out / "runs").glob("*/metrics.json")}

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(sweep_module, "run_training", no_training)
    assert compare(tiny_model_dir, sentiment_csv, out, "--ood-set", f"books={books}") == 0
    assert run_files(out) == before  # same folders (the hash ignores evaluation sets), checkpoints untouched
    rescored = {p.parent.name: json.loads(p.read_text()) for p in (out / "runs").glob("*/metrics.json")}
    for name, saved in rescored.items():
        books_scores = saved.pop("eval_sets")["books"]
        assert saved["summary"].pop("eval_sets") == {"books": {"kind": "ood", **{
            k: books_scores[k] for k in ("accuracy", "macro_f1", "mcc")}}}
        scores_before[name]["summary"].pop("eval_sets")
        scores_before[name].pop("eval_sets")
        assert saved == scores_before[name]  # nothing else changed
        lines = (out / "runs" / name / "metrics.jsonl").read_text().splitlines()
        last = json.loads(lines[-1])
        assert (last["kind"], last["name"], last["step"]) == ("eval_set", "books", saved["best_step"])
    reused = json.loads((out / "results.json").read_text())["rows"]
    monkeypatch.undo()
    # the same sets scored while training, in a fresh sweep: the same numbers as on the reloaded checkpoints
    fresh_out = tmp_path / "fresh"
    assert compare(tiny_model_dir, sentiment_csv, fresh_out, "--ood-set", f"books={books}") == 0
    fresh = json.loads((fresh_out / "results.json").read_text())["rows"]
    assert [r["strategy"] for r in reused] == [r["strategy"] for r in fresh]
    for r, f in zip(reused, fresh):
        assert r["eval_sets"]["books"] == f["eval_sets"]["books"]
    assert sorted(p.name for p in (fresh_out / "runs").iterdir()) == sorted(rescored)
    # a third pass finds every set scored: it reads, it does not load a checkpoint
    monkeypatch.setattr(sweep_module, "complete_finished", wrapped := _Counting(sweep_module.complete_finished))
    monkeypatch.setattr("freezetune.runs.eval_sets.load_checkpoint", no_training)
    assert compare(tiny_model_dir, sentiment_csv, out, "--ood-set", f"books={books}") == 0
    assert wrapped.calls == 4
    capsys.readouterr()


class _Counting:
    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.fn(*args, **kwargs)
