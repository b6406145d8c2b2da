"""`--task causal-lm` through the command line: train, compare, predict (generate), and bad input."""

import csv
import json

import pytest

from conftest import WORDS
from freezetune.cli.main import main

FAST_LM = ["--task", "causal-lm", "--epochs", "2", "--batch-size", "8", "--max-length", "32", "--no-progress",
           "--retention", "none", "--lr", "1e-2"]
PAIRS = ["--prompt-column", "prompt", "--response-column", "response"]


def test_train_then_predict_generates(tiny_decoder_dir, chat_jsonl, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--model", tiny_decoder_dir, "--data", str(chat_jsonl), "--test-data", str(chat_jsonl),
                 *PAIRS, *FAST_LM, "--strategy", "top_k:2", "--output", str(out)])
    stdout = capsys.readouterr().out
    assert code == 0
    assert "test exact match" in stdout and "perplexity" in stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["summary"]["task"] == "causal-lm"
    assert set(metrics["test"]) >= {"loss", "perplexity", "token_accuracy", "exact_match"}
    assert metrics["costs"]["cache"].startswith("on")  # two frozen blocks below the trained ones
    assert json.loads((out / "checkpoint" / "checkpoint.json").read_text())["task"] == "causal-lm"
    prompts = tmp_path / "prompts.csv"
    prompts.write_text("prompt\nreview the film was very good . sentiment ?\n\"\"\nreview the film was bad .\n")
    predictions = tmp_path / "out.csv"
    code = main(["predict", "--checkpoint", str(out), "--data", str(prompts), "--max-new-tokens", "3",
                 "--output", str(predictions)])
    assert code == 0
    rows = list(csv.DictReader(predictions.open()))
    assert [r["prompt"] for r in rows][::2] == ["review the film was very good . sentiment ?",
                                                "review the film was bad ."]
    assert rows[1]["generation"] == ""  # no prompt, no generation
    assert all(word in WORDS for r in rows for word in r["generation"].split())  # decoded, specials skipped


def test_plain_text_file_trains_and_reports_perplexity(tiny_decoder_dir, tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(["the film was very good and fun .", "the plot was dull .",
                                   "is this a good movie ?", "the story was quite bad ."] * 4))
    out = tmp_path / "run"
    code = main(["train", "--model", tiny_decoder_dir, "--data", str(corpus), *FAST_LM, "--strategy", "lora:r=4",
                 "--output", str(out)])
    stdout = capsys.readouterr().out
    assert code == 0 and "validation perplexity" in stdout
    assert "metric: loss" in (out / "config.yaml").read_text()  # --metric auto is written out as the task's


def test_compare_ranks_plans_on_the_monitored_metric(tiny_decoder_dir, chat_jsonl, tmp_path, capsys):
    out = tmp_path / "cmp"
    code = main(["compare", "--model", tiny_decoder_dir, "--data", str(chat_jsonl), *PAIRS, *FAST_LM,
                 "--strategy", "full", "--strategy", "top_k:1", "--strategy", "lora:r=4:blocks=2,3",
                 "--seeds", "1", "--output", str(out)])
    capsys.readouterr()
    assert code == 0
    table = (out / "results.txt").read_text()
    assert "validation exact match (mean ± std)" in table and "perplexity" in table
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [r["strategy"] for r in rows] == ["full", "top_k:1", "lora:r=4:blocks=2,3"]
    assert all(r["headline"] == "exact_match" and r["validation_score"] > 0 for r in rows)  # the loss
    # the report ranks on the task's headline; its perplexity column is there for every plan
    report = (out / "report.md").read_text()
    best = max(rows, key=lambda r: r["exact_match"])["strategy"]
    assert f"**best exact match: {best}**" in report
    assert "| plan | training rows | validation exact match |" in report


@pytest.mark.parametrize("args, message", [
    (["--task", "causal-lm"], "--task causal-lm needs --data"),
    (["--task", "causal-lm", "--data", "{chat}", "--prompt-column", "prompt"],
     "needs both --prompt-column and --response-column"),
    (["--task", "causal-lm", "--data", "{chat}", "--text-column", "body"], "has no column 'body'"),
    (["--task", "causal-lm", "--data", "{chat}", "--metric", "mcc"], "--metric mcc does not apply to causal-lm"),
])
def test_bad_causal_lm_input_is_one_line_and_exit_2(tiny_decoder_dir, chat_jsonl, tmp_path, capsys, args, message):
    args = [a.replace("{chat}", str(chat_jsonl)) for a in args]
    code = main(["train", "--model", tiny_decoder_dir, *args, "--no-progress", "--retention", "none",
                 "--epochs", "1", "--output", str(tmp_path / "run")])
    captured = capsys.readouterr()
    assert code == 2
    assert message in captured.err
    assert len(captured.err.strip().splitlines()) == 1


def test_score_and_retention_work_on_causal_lms(tiny_decoder_dir, chat_jsonl, tmp_path, capsys):
    code = main(["score", "--task", "causal-lm", "--model", tiny_decoder_dir, "--data", str(chat_jsonl), *PAIRS,
                 "--scorer", "semantic", "--scorer", "gradient", "--samples", "16", "--max-length", "32",
                 "--json", str(tmp_path / "scores.json")])
    assert code == 0
    scores = json.loads((tmp_path / "scores.json").read_text())["scores"]
    assert [s["scorer"] for s in scores] == ["semantic", "gradient"]
    assert scores[0]["details"]["readout"] == "logit_lens"
    out = tmp_path / "run"
    assert main(["train", "--model", tiny_decoder_dir, "--data", str(chat_jsonl), *PAIRS, *FAST_LM,
                 "--strategy", "top_k:1", "--output", str(out)]) == 0
    corpus = tmp_path / "english.txt"
    corpus.write_text("the film was very good and fun . the plot was dull .\n" * 20)
    capsys.readouterr()
    assert main(["retention", "--checkpoint", str(out), "--reference", "ppl", "--reference-data", str(corpus)]) == 0
    assert "ppl" in capsys.readouterr().out
