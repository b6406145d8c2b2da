"""metrics.py: hand-computed scores, absent classes, metric directions, table layout."""

import json
import math

import pytest

from freezetune.core.errors import FreezetuneError
from freezetune.measure.metrics import METRIC_DIRECTIONS, classification_metrics, format_table, is_better


def test_binary_metrics_match_hand_computation():
    # Confusion (rows true, cols pred): [[2, 1], [1, 2]]  -> TP=2 FP=1 FN=1 TN=2
    y_true = [0, 0, 0, 1, 1, 1]
    y_pred = [0, 0, 1, 0, 1, 1]
    m = classification_metrics(y_true, y_pred, ["neg", "pos"])
    assert m["n"] == 6
    assert m["accuracy"] == pytest.approx(4 / 6)
    # Each class: precision = recall = f1 = 2/3.
    assert m["macro_f1"] == pytest.approx(2 / 3)
    # MCC = (TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (4 - 1) / 9
    assert m["mcc"] == pytest.approx(3 / 9)
    assert m["per_class"]["pos"] == pytest.approx(
        {"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3}
    )


def test_unbalanced_per_class_values():
    # class 0: TP=3, FN=1 (predicted 1); class 1: TP=1, FP=1 -> p0=1, r0=.75; p1=.5, r1=1
    m = classification_metrics([0, 0, 0, 0, 1], [0, 0, 0, 1, 1], ["a", "b"])
    a, b = m["per_class"]["a"], m["per_class"]["b"]
    assert (a["precision"], a["recall"], a["support"]) == (1.0, 0.75, 4)
    assert a["f1"] == pytest.approx(2 * 0.75 / 1.75)
    assert (b["precision"], b["recall"], b["support"]) == (0.5, 1.0, 1)
    assert b["f1"] == pytest.approx(2 / 3)
    assert m["macro_f1"] == pytest.approx((2 * 0.75 / 1.75 + 2 / 3) / 2)


def test_perfect_and_constant_predictions():
    perfect = classification_metrics([0, 1, 2, 1], [0, 1, 2, 1], ["a", "b", "c"])
    assert perfect["accuracy"] == 1.0 and perfect["macro_f1"] == 1.0 and perfect["mcc"] == 1.0
    constant = classification_metrics([0, 1, 0, 1], [1, 1, 1, 1], ["a", "b"])
    assert constant["mcc"] == 0.0
    assert constant["accuracy"] == 0.5
    assert constant["per_class"]["a"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}


def test_absent_class_gets_zero_entry_and_is_left_out_of_macro_f1():
    m = classification_metrics([0, 1, 0], [0, 1, 0], ["a", "b", "never_seen"])
    assert m["per_class"]["never_seen"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert m["macro_f1"] == 1.0  # the unseen class is not the model's fault


def test_results_are_plain_json_types():
    m = classification_metrics([0, 1], [1, 1], ["a", "b"])
    assert json.loads(json.dumps(m)) == m
    assert type(m["accuracy"]) is float and type(m["per_class"]["a"]["support"]) is int


def test_bad_inputs():
    with pytest.raises(FreezetuneError, match="no examples"):
        classification_metrics([], [], ["a"])
    with pytest.raises(ValueError, match="outside"):
        classification_metrics([0, 3], [0, 1], ["a", "b"])
    with pytest.raises(ValueError):
        classification_metrics([0, 1], [0], ["a", "b"])


def test_is_better_follows_direction():
    assert set(METRIC_DIRECTIONS) >= {"accuracy", "macro_f1", "mcc", "loss"}
    assert is_better("accuracy", 0.9, 0.8) and not is_better("accuracy", 0.8, 0.9)
    assert is_better("loss", 0.3, 0.5) and not is_better("loss", 0.5, 0.3)
    assert not is_better("mcc", 0.5, 0.5)  # ties don't count as improvement
    assert is_better("loss", 10.0, None)
    assert not is_better("loss", math.nan, 1.0)
    with pytest.raises(FreezetuneError, match="choose one of"):
        is_better("bleu", 1.0, 0.0)


def test_format_table_alignment_and_missing_values():
    rows = [
        {"name": "full", "acc": 0.91234, "params": 22_700_000},
        {"name": "top_k=2", "acc": 0.9, "params": None},
        {"name": "lora"},
    ]
    table = format_table(rows, [("name", "strategy", ""), ("acc", "accuracy", ".3f"), ("params", "trainable", ",")])
    lines = table.splitlines()
    assert lines[0].split() == ["strategy", "accuracy", "trainable"]
    assert set(lines[1].replace(" ", "")) == {"-"}
    assert lines[2].split() == ["full", "0.912", "22,700,000"]
    assert lines[3].split() == ["top_k=2", "0.900", "-"]
    assert lines[4].split() == ["lora", "-", "-"]
    # Numbers right-aligned: the ends of each numeric column line up.
    acc_end = lines[0].index("accuracy") + len("accuracy")
    assert all(line[acc_end - 1] != " " for line in lines[2:])
    assert lines[2].endswith("22,700,000") and lines[3].endswith("-")
    # The last column is numeric, so every line (header included) ends at the same place.
    assert len({len(line) for line in lines}) == 1
    # Text column left-aligned: every row starts at column 0.
    assert all(not line.startswith(" ") for line in lines)


def test_format_table_text_with_numeric_spec_does_not_crash():
    table = format_table([{"acc": "n/a"}, {"acc": 0.5}], [("acc", "accuracy", ".2f")])
    assert "n/a" in table and "0.50" in table


def test_nothing_learned_is_within_the_rows_sampling_error_or_the_seed_spread_of_the_majority():
    from freezetune.measure.metrics import nothing_learned

    # 100 rows: accuracy's widest sampling error is 0.05
    assert nothing_learned(0.58, 0.54, "accuracy", 100)
    assert not nothing_learned(0.60, 0.54, "accuracy", 100)
    assert nothing_learned(0.60, 0.54, "accuracy", 100, spread=0.07)  # the seeds disagree by more
    assert nothing_learned(0.40, 0.54, "accuracy", 100)  # worse than the majority learned nothing either
    assert not nothing_learned(2.0, 3.0, "loss", 100, larger_is_better=False)  # no bound: any gain counts
