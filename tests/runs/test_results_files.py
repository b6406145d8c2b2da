"""A sweep's results.csv: the results table's columns first, in its order; whole numbers stay whole."""

import csv

from freezetune.runs.sweep import Sweep, _stats, write_results


def row(strategy, **extra):
    return {"strategy": strategy, "lr": 1e-4, "seeds": 2, "lrs_tried": [1e-4], "reported_split": "validation",
            "headline": "accuracy", "accuracy": 0.75, "accuracy_std": 0.05, "headline_pm": "0.750 ± 0.050",
            "macro_f1": 0.7, "macro_f1_std": 0.1, "trainable_params": 770, "trainable_params_std": 0.0,
            "checkpoint_bytes": 3_088, "train_time_s": 204.0, "steady_step_s": 0.14,
            "peak_memory_bytes": 1_144_606_720, "peak_mib": 1091.6, "validation_score": 0.75, **extra}


def test_means_of_whole_numbers_stay_whole():
    assert _stats([770, 770]) == (770, 0.0) and isinstance(_stats([770, 770])[0], int)
    assert _stats([770, 771])[0] in (770, 771)  # a mean count over seeds of different plans: rounded
    assert _stats([0.5, 0.75]) == (0.625, _stats([0.5, 0.75])[1])


def test_results_csv_follows_the_table_and_writes_integers(tmp_path):
    rows = [row("full"), row("auto", chosen="blocks 2-3 / blocks 3")]
    write_results(tmp_path, rows, Sweep(strategies=["full", "auto"], output=str(tmp_path)))
    with open(tmp_path / "results.csv", newline="") as handle:
        header, *lines = list(csv.reader(handle))
    assert header[:12] == ["strategy", "chosen", "accuracy", "accuracy_std", "headline_pm", "macro_f1",
                           "macro_f1_std", "lr", "trainable_params", "trainable_params_std", "checkpoint_bytes",
                           "train_time_s"]
    assert header[12:15] == ["steady_step_s", "peak_memory_bytes", "headline"]  # then the other keys, sorted
    values = dict(zip(header, lines[0]))
    assert values["trainable_params"] == "770" and values["peak_memory_bytes"] == "1144606720"
    text = (tmp_path / "results.txt").read_text()
    assert "chosen plan per seed" in text and "blocks 2-3 / blocks 3" in text
    assert "1.07 GiB" in text and "3.0 KiB" in text and "3.4 min" in text and "0.140 s" in text
    assert "770.0" not in text and "1144606720" not in text
