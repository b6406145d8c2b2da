"""Language-modelling data: prompts masked, prompt starts cut before responses, counts, packing, formats."""

import json

import pytest

from conftest import tiny_tokenizer
from freezetune.core.errors import FreezetuneError
from freezetune.io.lm_data import IGNORE, load_lm_data


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def targets(example):
    return [t for t in example["labels"] if t != IGNORE]


@pytest.mark.parametrize("chat", [True, False])
def test_prompt_is_masked_and_response_ends_with_eos(tmp_path, chat):
    tok = tiny_tokenizer(chat)
    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "review the film was great", "response": "positive"}] * 4)
    data = load_lm_data(path, tokenizer=tok, prompt_column="prompt", response_column="response", max_length=32,
                        chat_template="auto")
    example = data.train[0]
    positive = tok.convert_tokens_to_ids("positive")
    assert targets(example) == [positive, tok.eos_token_id]
    masked = sum(t == IGNORE for t in example["labels"])
    assert example["input_ids"][masked:] == [positive, tok.eos_token_id]
    assert data.chat_template is chat
    if chat:  # rendered as a user turn, then the assistant's answer
        assert tok.decode(example["input_ids"][:masked]).startswith("<|im_start|> user review")


def test_long_examples_lose_the_start_of_the_prompt_never_the_response(tmp_path):
    tok = tiny_tokenizer(chat=False)
    long_prompt = " ".join(["very"] * 20) + " good"
    rows = [{"prompt": long_prompt, "response": "positive negative positive"},
            {"prompt": "good", "response": "positive"},
            {"prompt": "bad", "response": " ".join(["negative"] * 12)},  # alone fills max_length: dropped
            {"prompt": "bad", "response": ""}]  # empty response: dropped as missing
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    data = load_lm_data(path, tokenizer=tok, prompt_column="prompt", response_column="response", max_length=10,
                        eval_path=path)
    assert len(data.train) == 2 and data.truncated["train"] == 1 and data.dropped["train"] == 2
    first = data.train[0]
    assert len(first["input_ids"]) == 10
    assert targets(first) == tok("positive negative positive", add_special_tokens=False)["input_ids"] + [
        tok.eos_token_id]
    assert first["input_ids"][:6] == tok(" ".join(["very"] * 5) + " good", add_special_tokens=False)["input_ids"]


def test_plain_text_trains_on_every_token_and_txt_paragraphs_are_examples(tmp_path):
    tok = tiny_tokenizer(chat=False)
    path = tmp_path / "corpus.txt"
    path.write_text("the film was good .\n\nthe plot\nwas dull .\n\n\nis this a movie ?\n")
    data = load_lm_data(path, tokenizer=tok, max_length=16, eval_path=path)
    assert len(data.train) == 3
    second = data.train[1]
    assert second["labels"] == second["input_ids"]  # every token is a target
    assert tok.decode(second["input_ids"]) == "the plot was dull . <|im_end|>"


def test_packing_cuts_one_stream_into_full_windows(tmp_path):
    tok = tiny_tokenizer(chat=False)
    rows = [{"text": "the film was very good and fun ."}] * 10
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    packed = load_lm_data(path, tokenizer=tok, max_length=8, pack=True, eval_path=path)
    plain = load_lm_data(path, tokenizer=tok, max_length=64, eval_path=path)
    lengths = [len(x) for x in packed.train["input_ids"]]
    assert lengths[:-1] == [8] * (len(lengths) - 1)
    assert sum(lengths) == sum(len(x) for x in plain.train["input_ids"])  # nothing cut, nothing padded


def test_validation_split_and_row_limits_are_seeded(tmp_path):
    tok = tiny_tokenizer()
    rows = [{"prompt": f"review {w}", "response": "positive"} for w in ["good", "great", "fun", "bad"] * 10]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    one = load_lm_data(path, tokenizer=tok, prompt_column="prompt", response_column="response", seed=3,
                       max_train_rows=30)
    two = load_lm_data(path, tokenizer=tok, prompt_column="prompt", response_column="response", seed=3,
                       max_train_rows=30)
    assert one.train["input_ids"] == two.train["input_ids"] and len(one.train) + len(one.validation) == 30
    assert one.validation_source.startswith("split of training data")


@pytest.mark.parametrize("kwargs, message", [
    ({"prompt_column": "prompt"}, "needs both --prompt-column and --response-column"),
    ({"prompt_column": "question", "response_column": "response"}, "has no column 'question'"),
    ({"text_column": "body"}, "has no column 'body'"),
    ({"chat_template": "yes"}, "--chat-template must be auto or none"),
])
def test_bad_columns_and_options_are_one_clear_error(tmp_path, kwargs, message):
    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "good", "response": "positive", "text": "x"}] * 4)
    with pytest.raises(FreezetuneError, match=message):
        load_lm_data(path, tokenizer=tiny_tokenizer(), **kwargs)


def test_txt_files_cannot_hold_prompt_response_pairs(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("good\n\nbad\n")
    with pytest.raises(FreezetuneError, match="plain text"):
        load_lm_data(path, tokenizer=tiny_tokenizer(), prompt_column="prompt", response_column="response")


def test_a_text_exactly_max_length_long_is_kept_whole(tmp_path):
    tok = tiny_tokenizer(chat=False)
    path = tmp_path / "c.txt"
    path.write_text("the film was very good .\n\nthe film was very good and fun .\n")  # 6 + EOS = 7 tokens
    data = load_lm_data(path, tokenizer=tok, max_length=7, eval_path=path)
    assert [len(x) for x in data.train["input_ids"]] == [7, 7]
    assert data.truncated["train"] == 1 and data.dropped["train"] == 0


def test_a_template_whose_turn_ends_before_eos_stops_there(tmp_path):
    from freezetune.io.lm_data import PromptFormat

    tok = tiny_tokenizer()
    tok.add_special_tokens({"eos_token": "<s>"})  # like a base model: EOS is not the turn's end
    fmt = PromptFormat.choose(tok, "auto")
    turn_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert fmt.stop_ids == [tok.eos_token_id, turn_end]
    ((_, response),) = fmt.pairs(["review good"], ["positive"])
    assert response == [tok.convert_tokens_to_ids("positive"), turn_end]  # the template's trailing layout is cut


def test_list_cells_are_values_not_a_crash(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": ["good", "film"]}, {"text": "the film"}, {"text": ""}] * 2)
    data = load_lm_data(path, tokenizer=tiny_tokenizer(chat=False), eval_path=path)
    assert len(data.train) == 4 and data.dropped["train"] == 2
