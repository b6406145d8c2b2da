"""Served completions decode token for token what `freezetune predict` writes; stop strings; streamed text."""

import pandas as pd
import pytest

from freezetune.runs.predict import predict_file
from freezetune.serve.generation import Decoding

PROMPTS = ["review the film was very great . sentiment ?", "the plot was dull", "good"]


@pytest.fixture(scope="module")
def predicted(lm_checkpoints, tmp_path_factory):
    folder = tmp_path_factory.mktemp("lm-predict")
    data = folder / "prompts.csv"
    pd.DataFrame({"prompt": PROMPTS}).to_csv(data, index=False)
    return {name: pd.read_csv(predict_file(path, data, output_path=folder / f"{name}.csv", max_new_tokens=8),
                              keep_default_na=False)["generation"].tolist()
            for name, path in lm_checkpoints.items()}


def decode(task, max_tokens=8, stop=(), on_text=None):
    prompts = task.prompt_format.prompts(PROMPTS)
    return Decoding(task, prompts, max_tokens=max_tokens, stop=list(stop), on_text=on_text).run()


@pytest.mark.parametrize("name", ["chat", "lmlora"])
def test_generations_are_predicts_token_for_token(decoder_base, predicted, name):
    task = decoder_base.tasks[name]
    choices = decode(task)
    assert [c.text.strip() for c in choices] == predicted[name]
    assert any(c.tokens for c in choices)  # the perturbed model says something
    for choice in choices:
        assert choice.finish_reason == ("length" if len(choice.tokens) == 8 else "stop")


def test_a_stop_string_cuts_the_text_and_ends_the_choice(decoder_base):
    task = decoder_base.tasks["chat"]
    full = decode(task)
    word = next(c.text.split()[1] for c in full if len(c.text.split()) > 2)
    cut = decode(task, stop=[word])
    for whole, part in zip(full, cut):
        if word in whole.text:
            assert part.text == whole.text[: whole.text.index(word)] and part.finish_reason == "stop"
        else:
            assert part.text == whole.text


def test_streamed_pieces_add_up_to_the_text_and_never_show_a_stop_string(decoder_base):
    task = decoder_base.tasks["chat"]
    full = decode(task)
    word = next(c.text.split()[1] for c in full if len(c.text.split()) > 2)
    pieces = {}
    choices = decode(task, stop=[word], on_text=lambda i, text: pieces.setdefault(i, []).append(text))
    for choice in choices:
        streamed = "".join(pieces.get(choice.index, []))
        assert streamed == choice.text
        assert word not in streamed
    assert max(len(p) for p in pieces.values()) > 1  # it streamed step by step, not all at the end
