"""What a run tells the user: a line per phase, epoch and evaluation (also with --no-progress), readable units."""

import json
import re

from conftest import FAST
from freezetune.cli.main import main
from freezetune.runs import tensorboard_log


def train_args(model_dir, data, output, *extra):
    return ["train", "--model", str(model_dir), "--data", str(data), "--output", str(output), *FAST, *extra]


def test_train_says_what_it_does_in_each_phase(tiny_model_dir, sentiment_csv, tmp_path, caplog, capsys):
    out = tmp_path / "run"
    args = train_args(tiny_model_dir, sentiment_csv, out, "--epochs", "2", "--retention", "cka",
                      "--retention-limit", "8")
    assert main(args) == 0  # FAST has --no-progress: no bars, the lines stay
    stdout = capsys.readouterr().out
    messages = caplog.messages
    assert messages[0].startswith("data: 58 training, 6 validation, 0 test rows; validation: split of training data")
    assert sum(m.startswith("plan: lower_half\nunit") for m in messages) == 1 and "plan:" not in messages
    assert any(m.startswith("building the frozen-prefix cache: blocks 0..1 on 58 rows") for m in messages)
    assert any(re.fullmatch(r"frozen-prefix cache on: boundary 2, [\d.]+ KiB in RAM \(fp32\) \([\d.]+ s\)", m)
               for m in messages)
    epochs = [m for m in messages if m.startswith("epoch ")]
    assert len(epochs) == 2
    assert re.fullmatch(r"epoch 2: step 16/16, mean training loss \d\.\d{4}, [\d.]+ s", epochs[1])
    evaluations = [m for m in messages if m.startswith("evaluation ")]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(evaluations) == sum(r["kind"] == "eval" for r in records) == 2  # one line per evaluation
    assert re.fullmatch(r"evaluation at step 8 \(epoch 1\): accuracy \d\.\d{4} \(best so far\); "
                        r"macro_f1 \d\.\d{4}, mcc -?\d\.\d{4}, loss \d\.\d{4} \([\d.]+ s\)", evaluations[0])
    assert any(m.startswith("retention (cka on ") and m.endswith(" s)") for m in messages)
    assert any(re.fullmatch(r"checkpoint saved in [\d.]+ s: [\d.]+ KiB of trained tensors \(a full model is "
                            r"[\d.]+ MiB\)", m) for m in messages)
    header, _, line = stdout.splitlines()[:3]
    assert "time/epoch" in header and "peak memory" in header
    assert re.search(r"18,210 +1\.79 +[\d.]+ s +[\d.]+ s +\d+ MiB$", line)
    assert not re.search(r"\d{7}", stdout.replace(",", ""))  # no raw byte counts
    assert (out / "curves.png").stat().st_size > 0
    # the loss curve reaches the last evaluation: each epoch's last step is logged
    assert [r["step"] for r in records if r["kind"] == "train"] == [*range(1, 11), 16]


def test_a_missing_tensorboard_is_the_only_output(tiny_model_dir, sentiment_csv, tmp_path, caplog, capsys,
                                                   monkeypatch):
    monkeypatch.setattr(tensorboard_log.importlib.util, "find_spec", lambda name: None)
    out = tmp_path / "run"
    assert main(train_args(tiny_model_dir, sentiment_csv, out, "--report-to", "tensorboard")) == 2
    captured = capsys.readouterr()
    assert not captured.out and not caplog.messages and not out.exists()
    assert captured.err == ("freezetune: error: --report-to tensorboard needs the tensorboard package: "
                            "pip install tensorboard (or drop --report-to)\n")


def test_compare_table_names_auto_choice_in_readable_units(tiny_model_dir, sentiment_csv, tmp_path, capsys):
    out = tmp_path / "cmp"
    args = ["compare", "--model", tiny_model_dir, "--data", str(sentiment_csv), "--strategy", "auto:gradient:budget=1",
            "--strategy", "head_only", "--seeds", "1", "--output", str(out), *FAST]
    assert main(args) == 0
    stdout = capsys.readouterr().out
    rows = {r["strategy"]: r for r in json.loads((out / "results.json").read_text())["rows"]}
    chosen = rows["auto:gradient:budget=1"]["chosen"]
    assert re.fullmatch(r"blocks \d|LoRA r=8, blocks all", chosen)  # 58 rows may support no block: LoRA
    for table in (stdout, (out / "results.txt").read_text()):
        header, _, *lines = table.splitlines()
        assert header.split()[:4] == ["strategy", "chosen", "plan", "per"]
        auto = next(line for line in lines if line.startswith("auto:gradient:budget=1"))
        # five durations (waited, train, cache build, scoring, step), then peak memory
        assert chosen in auto and re.search(r"KiB( +[\d.]+ s){5} +\d+ MiB$", auto)
    assert (out / "results.csv").read_text().startswith("strategy,chosen,accuracy,accuracy_std,headline_pm,")
    assert isinstance(rows["head_only"]["trainable_params"], int)
