"""`--extra-eval` / `--ood-set`: scored apart on the trained model, reported everywhere, checked up front."""

import csv
import json

import pytest
import yaml

from conftest import FAST
from freezetune.cli.main import main

GOOD = ["great", "lovely", "wonderful", "superb", "excellent", "fine", "happy", "nice"]
BAD = ["awful", "terrible", "boring", "dreadful", "bad"]


def write_csv(path, rows, header=("text", "label")):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def books(tmp_path):
    """13 rows of another domain, labelled like the training data (pos / neg)."""
    return write_csv(tmp_path / "books.csv", [(f"the {w} book", "pos") for w in GOOD] +
                     [(f"the {w} book", "neg") for w in BAD])


def train(model_dir, data, out, *extra):
    return main(["train", "--model", str(model_dir), "--data", str(data), "--output", str(out), *FAST, *extra])


def records(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_train_scores_each_set_like_the_test_data(tiny_model_dir, sentiment_csv, books, tmp_path, capsys):
    out = tmp_path / "run"
    code = train(tiny_model_dir, sentiment_csv, out, "--test-data", str(books), "--ood-set", f"books={books}",
                 "--extra-eval", f"again={sentiment_csv}", "--strategy", "top_k:2")
    stdout = capsys.readouterr().out
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    sets = metrics["eval_sets"]
    assert list(sets) == ["again", "books"]
    assert (sets["books"]["kind"], sets["books"]["rows"]) == ("ood", 13)
    assert (sets["again"]["kind"], sets["again"]["rows"]) == ("extra", 64)
    # the same file as --test-data, read and tokenized the same way: the very same numbers
    assert {k: sets["books"][k] for k in metrics["test"]} == metrics["test"]
    assert metrics["summary"]["eval_sets"] == {
        "again": {"kind": "extra", **{k: sets["again"][k] for k in ("accuracy", "macro_f1", "mcc")}},
        "books": {"kind": "ood", **{k: metrics["test"][k] for k in ("accuracy", "macro_f1", "mcc")}},
    }
    scored = [r for r in records(out) if r["kind"] == "eval_set"]
    assert [(r["name"], r["set_kind"], r["step"]) for r in scored] == [
        ("again", "extra", metrics["best_step"]), ("books", "ood", metrics["best_step"])]
    assert scored[1]["accuracy"] == metrics["test"]["accuracy"]
    # the summary table: one column per set, the headline metric
    header = stdout.splitlines()[0]
    assert "again acc" in header and "books (OOD) acc" in header
    assert f"{metrics['test']['accuracy']:.3f}" in stdout.splitlines()[2]
    # the saved config names the sets; they are not what the run trained on, so a resume may add one
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["ood_set"] == [f"books={books}"] and config["extra_eval"] == [f"again={sentiment_csv}"]


@pytest.mark.parametrize("flag, value, message", [
    ("--ood-set", "books", r"--ood-set takes NAME=PATH \(e.g. reviews=reviews.csv\), got 'books'"),
    ("--extra-eval", "=x.csv", "--extra-eval takes NAME=PATH"),
    ("--ood-set", "my books={books}", "--ood-set name 'my books' may hold only letters, digits"),
    ("--ood-set", "test={books}", "--ood-set name 'test' is taken by the run's own split"),
    ("--ood-set", "novels={missing}", "--ood-set novels: no such file: .*nope.csv"),
    ("--extra-eval", "books={books}", "the evaluation set name 'books' is given twice"),
    ("--label-map", "pos", r"--label-map takes OLD=NEW pairs"),
])
def test_bad_set_is_one_line_and_exit_2(flag, value, message, tiny_model_dir, sentiment_csv, books, tmp_path,
                                        capsys):
    out = tmp_path / "run"
    value = value.format(books=books, missing=tmp_path / "nope.csv")
    code = train(tiny_model_dir, sentiment_csv, out, "--ood-set", f"books={books}", flag, value)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("freezetune: error:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err
    assert pytest.importorskip("re").search(message, lines[0]), lines[0]
    assert not out.exists()


def test_unknown_labels_are_named_with_counts_and_a_label_map_renames_them(tiny_model_dir, sentiment_csv, tmp_path,
                                                                           capsys):
    novels = write_csv(tmp_path / "novels.csv", [(f"the {w} novel", "positive") for w in GOOD] +
                       [(f"the {w} novel", "negative") for w in BAD] + [("the novel", "pos")])
    out = tmp_path / "run"
    assert train(tiny_model_dir, sentiment_csv, out, "--ood-set", f"novels={novels}") == 2
    error = capsys.readouterr().err.strip()
    assert error == (f"freezetune: error: ood set 'novels' ({novels}) has label(s) 'negative' (5 rows), 'positive' "
                     "(8 rows) never seen in the training data ('neg', 'pos'): check --label-column or the files, or "
                     "rename them with --label-map OLD=NEW")
    assert not out.exists()
    # YAML takes mappings; the map renames every evaluation file (the test file too), never the training data
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"ood_set": {"novels": str(novels)}, "test_data": str(novels),
                                      "label_map": {"positive": "pos", "negative": "neg"}}, sort_keys=False))
    assert train(tiny_model_dir, sentiment_csv, out, "--config", str(config), "--max-eval-rows", "6") == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["eval_sets"]["novels"]["rows"] == 6  # --max-eval-rows caps the sets too
    assert metrics["data"]["test_rows"] == 14  # the test file is never sampled
    assert metrics["data"]["labels"] == ["neg", "pos"]
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["label_map"] == ["positive=pos", "negative=neg"] and saved["ood_set"] == [f"novels={novels}"]
    # the same map on the command line
    again = tmp_path / "again"
    assert train(tiny_model_dir, sentiment_csv, again, "--ood-set", f"novels={novels}", "--max-eval-rows", "6",
                 "--label-map", "positive=pos,negative=neg", "--test-data", str(novels)) == 0
    assert json.loads((again / "metrics.json").read_text())["eval_sets"] == metrics["eval_sets"]


def test_causal_lm_sets_get_the_task_metrics(tiny_decoder_dir, chat_jsonl, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--model", tiny_decoder_dir, "--data", str(chat_jsonl), "--test-data", str(chat_jsonl),
                 "--task", "causal-lm", "--prompt-column", "prompt", "--response-column", "response",
                 "--extra-eval", f"chat={chat_jsonl}", "--epochs", "1", "--batch-size", "8", "--max-length", "32",
                 "--no-progress", "--retention", "none", "--strategy", "top_k:2", "--output", str(out)])
    stdout = capsys.readouterr().out
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    chat = metrics["eval_sets"]["chat"]
    assert (chat["kind"], chat["rows"]) == ("extra", 48)
    assert {k: chat[k] for k in metrics["test"]} == metrics["test"]  # loss, perplexity, token accuracy, exact match
    assert set(metrics["summary"]["eval_sets"]["chat"]) == {"kind", "exact_match", "perplexity", "loss",
                                                             "token_accuracy"}
    assert "chat exact match" in stdout.splitlines()[0]


def test_label_map_is_refused_for_causal_lm(tiny_decoder_dir, chat_jsonl, tmp_path, capsys):
    code = main(["train", "--model", tiny_decoder_dir, "--data", str(chat_jsonl), "--task", "causal-lm",
                 "--text-column", "prompt", "--label-map", "a=b", "--output", str(tmp_path / "run")])
    assert code == 2 and "--label-map renames classification labels" in capsys.readouterr().err


def test_a_set_may_be_added_when_resuming(tiny_model_dir, sentiment_csv, books, tmp_path, capsys, monkeypatch):
    from freezetune.training.loop import Loop

    original = Loop.epoch

    def interrupted(self, *args, **kwargs):
        if self.state.epoch == 1:
            raise KeyboardInterrupt  # killed during the second epoch
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Loop, "epoch", interrupted)
    out = tmp_path / "run"
    assert train(tiny_model_dir, sentiment_csv, out, "--epochs", "2") == 130
    monkeypatch.setattr(Loop, "epoch", original)
    assert main(["train", "--resume", str(out), "--ood-set", f"books={books}"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["eval_sets"]["books"]["rows"] == 13
    assert yaml.safe_load((out / "config.yaml").read_text())["ood_set"] == [f"books={books}"]
    capsys.readouterr()
