"""Requests into token rows: fan-out shares rows, shapes and lengths are checked, each refusal names its field."""

import pytest

from freezetune.serve.inputs import ApiError, Limits, classification_rows


def rows(bases, model, data, truncate=False, limits=None):
    by_task = {name: base for base in bases for name in base.tasks}
    return classification_rows(by_task, model, data, truncate, limits or Limits())


def refused(bases, model, data, status=400, **kwargs) -> ApiError:
    with pytest.raises(ApiError) as caught:
        rows(bases, model, data, **kwargs)
    assert caught.value.status == status
    return caught.value


def test_fan_out_tokenizes_once_and_shares_rows(bases):
    out = rows(bases, ["k1", "k2", "emb"], ["a great film", "ok", "a great film"])
    assert len(out.rows) == 2  # a repeated text is one row
    assert out.wants == {"k1": [0, 1, 0], "k2": [0, 1, 0], "emb": [0, 1, 0]}
    assert out.prompt_tokens == sum(len(ids) for ids, _ in out.rows)


def test_shapes_are_checked_per_task(bases):
    assert rows(bases, "pair", ["a film", "yes"]).wants["pair"] == [0]  # one [text, pair] item
    assert rows(bases, "pair", [["a", "b"], ["c", "d"]]).wants["pair"] == [0, 1]
    assert refused(bases, "pair", "alone").param == "input"
    assert refused(bases, "pair", [["a", "b", "c"]]).param == "input[0]"
    assert refused(bases, "k1", [["a", "b"]]).param == "input[0]"
    assert refused(bases, ["k1", "pair"], "x").param == "model"  # pairs and single texts do not mix
    assert refused(bases, "k1", []).param == "input"
    assert refused(bases, "k1", ["x"] * 5, limits=Limits(max_inputs=4)).param == "input"


def test_models_are_checked(bases):
    assert refused(bases, "nope", "x", status=404).kind == "model_not_found"
    assert "causal-lm" in refused(bases, "chat", "x").message
    assert refused(bases, ["k1", "chat"], "x").param == "model"
    assert refused(bases, ["k1", "k1"], "x").param == "model"
    assert refused(bases, [], "x").param == "model"


def test_long_inputs_are_refused_unless_truncation_is_asked_for(bases):
    long_text = " ".join(["film"] * 60)  # 62 tokens; the tasks take 32
    error = refused(bases, "k1", ["ok", long_text])
    assert error.param == "input" and "input[1] has 62 tokens" in error.message
    assert "'k1' takes at most 32" in error.message and "truncate" in error.message
    out = rows(bases, ["k1", "k2"], ["ok", long_text], truncate=True)
    assert out.truncated == {"k1": [False, True], "k2": [False, True]}
    assert max(len(ids) for ids, _ in out.rows) == 32
