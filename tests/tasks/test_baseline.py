"""What learning nothing scores: the training data's majority class, predicted for every reported row."""

import pytest

from freezetune.tasks.classification import SequenceClassification


def test_the_baseline_predicts_the_training_majority_on_the_reported_rows():
    task = SequenceClassification(label_names=["neg", "neu", "pos"])
    scores = task.baseline(train_labels=[1, 1, 1, 0, 2], reported_labels=[1, 0, 2, 1])
    assert scores["accuracy"] == pytest.approx(0.5) and scores["mcc"] == 0.0 and scores["n"] == 4
    assert "per_class" not in scores
    # the majority comes from the training rows, not from the rows it is scored on
    assert task.baseline(train_labels=[2, 2, 0], reported_labels=[0, 0, 2])["accuracy"] == pytest.approx(1 / 3)
