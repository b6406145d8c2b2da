"""curves.png: the training loss and the validation metrics over steps, from metrics.jsonl."""

import json

from freezetune.runs.curves import curves_figure, write_curves


def write_log(folder, records):
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    (folder / "metrics.jsonl").write_text("".join(line + "\n" for line in lines))


def test_curves_draw_the_loss_and_the_validation_metrics_over_steps(tmp_path):
    write_log(tmp_path, [
        {"time": 0.1, "kind": "train", "step": 1, "epoch": 0, "loss": 0.9, "lr": 1e-4},
        {"time": 0.2, "kind": "train", "step": 2, "epoch": 0, "loss": 0.7, "lr": 1e-4},
        {"time": 0.3, "kind": "eval", "step": 2, "epoch": 0, "loss": 0.65, "accuracy": 0.5, "macro_f1": 0.4,
         "n": 6, "per_class": {}},
        {"time": 0.4, "kind": "plan_change", "step": 2, "from": "a", "to": "b"},
        '{"time": 0.5, "kind": "tr',  # cut off by an interruption: skipped
    ])
    path = write_curves(tmp_path)
    assert path == tmp_path / "curves.png" and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_two_panels_have_units_and_legends():
    train = [{"step": s, "loss": 1.0 / s} for s in (1, 2, 3)]
    evals = [{"step": 3, "epoch": 0, "loss": 0.4, "accuracy": 0.75, "mcc": 0.5, "n": 8}]
    loss, metrics = curves_figure(train, evals).axes
    assert [t.get_text() for t in loss.get_legend().get_texts()] == ["training loss (batch)", "validation loss"]
    assert loss.get_ylabel() == "loss (cross-entropy, nats)"
    assert [t.get_text() for t in metrics.get_legend().get_texts()] == ["accuracy", "mcc"]
    assert metrics.get_xlabel() == "optimizer step" and metrics.get_ylabel() == "score (1 = perfect)"
    assert list(loss.lines[0].get_xdata()) == [1, 2, 3]


def test_a_language_model_without_other_metrics_shows_its_perplexity():
    evals = [{"step": 4, "epoch": 0, "loss": 2.0, "perplexity": 7.39, "target_tokens": 40}]
    _, metrics = curves_figure([], evals).axes
    assert metrics.get_ylabel() == "perplexity" and list(metrics.lines[0].get_ydata()) == [7.39]


def test_nothing_to_plot_writes_nothing(tmp_path):
    assert write_curves(tmp_path) is None
    write_log(tmp_path, [{"time": 0.1, "kind": "plan_change", "step": 0}])
    assert write_curves(tmp_path) is None
    assert not (tmp_path / "curves.png").exists()
