"""Bad data files, labels, flags and configs through `freezetune train`: one line, exit code 2, nothing written."""

import pytest
from bad_input import refused, train_args, write

ROWS = "".join(f"a nice film {i},pos\na bad film {i},neg\n" for i in range(8))


def rows(tmp_path, name, text):
    return write(tmp_path / name, text)


# Each case: (data file written in tmp_path, or a callable making it; extra flags; expected message).
FILES = {
    "missing_file": (None, [], r"no such file: .*nope\.csv; check the path"),
    "file_is_a_directory": ("dir", [], r"is a folder, not a file"),
    "empty_file": ("", [], r"empty\.csv is empty"),
    "header_only_file": ("text,label\n", [], r"has a header \('text', 'label'\) but no data rows"),
    "malformed_csv": ('text,label\n"never closed,pos\nok,neg\n', [], r"cannot parse .* never closed: close it"),
    "malformed_jsonl": ('{"text": "a", "label": "pos"}\n{"text": \n', [], r"line 2 of .* is not valid JSON"),
    "jsonl_line_not_an_object": ('["a", "pos"]\n', [], r"line 1 of .* is a JSON list, not an object"),
    "binary_garbage": (bytes(range(256)) * 4, [], r"looks binary, not text"),
    "misnamed_column": ("txt,label\n" + ROWS, [],
                        r"no column 'text' \(did you mean 'txt'\?\); its columns are 'txt', 'label'"),
    "missing_column": ("sentence,label\n" + ROWS, [], r"no column 'text'; its columns are 'sentence', 'label'"),
    "tsv_named_csv": ("text\tlabel\n" + ROWS.replace(",", "\t"), [], r"looks tab-separated.*rename it to \.tsv"),
    "semicolon_csv": ("text;label\n" + ROWS.replace(",", ";"), [], r"looks semicolon-separated.*comma-separated"),
    "unknown_extension": ("text,label\n" + ROWS, [], r"cannot tell the format of .*\.xlsx"),
    "undecodable_with_forced_encoding": ("text,label\n" + "caf\u00e9,pos\nbad,neg\n" * 4, ["--encoding", "utf-8"],
                                         r"is not valid utf-8 \(byte offset \d+.*--encoding latin-1"),
    "unknown_encoding": ("text,label\n" + ROWS, ["--encoding", "klingon"], r"unknown encoding 'klingon'"),
    "all_empty_texts": ("text,label\n" + ",pos\n ,neg\n" * 5, [], r"all 10 rows have an empty text or label"),
    "single_class": ("text,label\n" + "a nice film,pos\n" * 12, [],
                     r"has a single label, 'pos' \(all 12 rows\): a classifier needs at least two classes"),
    "stray_label_below_min_class_count": (
        "text,label\n" + ROWS + "a fine film, the\n", [],
        r"label 'the' has 1 row \(data row 17\), fewer than --min-class-count 2.*quoting.*--min-class-count 1"),
    "min_class_count_below_one": ("text,label\n" + ROWS, ["--min-class-count", "0"],
                                  r"--min-class-count must be at least 1, got 0"),
}
NAMES = {"unknown_extension": "data.xlsx", "malformed_jsonl": "data.jsonl", "jsonl_line_not_an_object": "data.jsonl",
         "empty_file": "empty.csv"}


@pytest.mark.parametrize("case", list(FILES))
def test_bad_data_file(case, tiny_model_dir, tmp_path, capsys):
    content, extra, pattern = FILES[case]
    data = tmp_path / NAMES.get(case, "data.csv")
    if content is None:
        data = tmp_path / "nope.csv"
    elif content == "dir":
        data.mkdir()
    else:
        data.write_bytes(content if isinstance(content, bytes) else content.encode("latin-1"))
    out = tmp_path / "run"
    refused(train_args(tiny_model_dir, data, out, *extra), capsys, pattern)
    assert not out.exists()


def test_label_in_eval_data_never_seen_in_training(tiny_model_dir, sentiment_csv, tmp_path, capsys):
    eval_data = write(tmp_path / "eval.csv", "text,label\nso so,meh\ngreat,pos\n")
    out = tmp_path / "run"
    refused(train_args(tiny_model_dir, sentiment_csv, out, "--eval-data", str(eval_data)), capsys,
            r"eval\.csv has label\(s\) 'meh' \(1 row\) never seen in the training data \('neg', 'pos'\)")
    assert not out.exists()


def test_rare_class_is_a_warning_and_training_proceeds(tiny_model_dir, tmp_path, caplog):
    from freezetune.cli.main import main

    data = write(tmp_path / "data.csv", "text,label\n" + "a nice film,pos\n" * 40 + "a bad film,neg\n" * 3)
    assert main(train_args(tiny_model_dir, data, tmp_path / "run", "--strategy", "head_only")) == 0
    assert "label 'neg' has 3 rows, far fewer than 'pos' (40)" in caplog.text


def test_min_class_count_1_keeps_a_stray_label(tiny_model_dir, tmp_path):
    from freezetune.cli.main import main

    data = write(tmp_path / "data.csv", "text,label\n" + ROWS + "a fine film, the\n")
    out = tmp_path / "run"
    assert main(train_args(tiny_model_dir, data, out, "--strategy", "head_only", "--min-class-count", "1")) == 0
    assert "the" in (out / "metrics.json").read_text()


# ---------------------------------------------------------------------- flags
@pytest.mark.parametrize("flag, value, pattern", [
    ("--batch-size", "0", r"--batch-size must be at least 1, got 0"),
    ("--batch-size", "-4", r"--batch-size must be at least 1, got -4"),
    ("--lr", "-1e-3", r"--lr must be positive, got -0\.001"),
    ("--lr", "0", r"--lr must be positive, got 0\.0"),
    ("--epochs", "0", r"--epochs must be at least 1, got 0"),
    ("--epochs", "-2", r"--epochs must be at least 1, got -2"),
])
@pytest.mark.parametrize("spelled", ["joined", "apart"])  # --lr=-1e-3 and --lr -1e-3 alike
def test_zero_or_negative_numbers(flag, value, pattern, spelled, tiny_model_dir, sentiment_csv, tmp_path, capsys):
    out = tmp_path / "run"
    given = [f"{flag}={value}"] if spelled == "joined" else [flag, value]
    refused([*train_args(tiny_model_dir, sentiment_csv, out), *given], capsys, pattern)
    assert not out.exists()


def test_mistyped_flag_suggests_the_right_one(tiny_model_dir, sentiment_csv, tmp_path, capsys):
    out = tmp_path / "run"
    refused([*train_args(tiny_model_dir, sentiment_csv, out), "--batch-sise", "4"], capsys,
            r"^freezetune: error: unrecognized argument --batch-sise \(did you mean '--batch-size'\?\) "
            r"\(see freezetune train --help\)$")
    assert not out.exists()


def test_flag_value_of_the_wrong_type(tiny_model_dir, sentiment_csv, tmp_path, capsys):
    refused([*train_args(tiny_model_dir, sentiment_csv, tmp_path / "run"), "--epochs", "three"], capsys,
            r"argument --epochs: invalid int value: 'three' \(see freezetune train --help\)$")


def test_missing_command(capsys):
    refused([], capsys, r"required: COMMAND \(see freezetune --help\)$")


def test_output_that_is_an_existing_file(tiny_model_dir, sentiment_csv, tmp_path, capsys):
    out = write(tmp_path / "run", "mine")
    refused(train_args(tiny_model_dir, sentiment_csv, out), capsys, r"run is a file, not a folder; choose another")
    assert out.read_text() == "mine"


# ---------------------------------------------------------------------- YAML configs
CONFIGS = {
    "yaml_unknown_keys": ("epoch: 2\nlrr: 0.1\nzzz: 1\n",
                          r"unknown keys 'epoch' \(did you mean 'epochs'\?\); 'lrr' \(did you mean 'lr'\?\); 'zzz' "),
    "yaml_not_a_mapping": ("- epochs\n- 2\n", r"must be a mapping of option: value .*not a list"),
    "yaml_malformed": ("epochs: [1\n", r"is not valid YAML: .* at line 2"),
    "yaml_python_tag": ("!!python/object/apply:os.system ['echo hacked']\n",
                        r"is not valid YAML: it uses a Python tag \(!!python/\.\.\.\)"),
}


@pytest.mark.parametrize("case", list(CONFIGS))
def test_bad_config_yaml(case, tiny_model_dir, sentiment_csv, tmp_path, capsys):
    text, pattern = CONFIGS[case]
    config = write(tmp_path / "c.yaml", text)
    out = tmp_path / "run"
    refused(train_args(tiny_model_dir, sentiment_csv, out, "--config", str(config)), capsys, pattern)
    assert not out.exists()


def test_missing_config_file(tiny_model_dir, sentiment_csv, tmp_path, capsys):
    refused(train_args(tiny_model_dir, sentiment_csv, tmp_path / "run", "--config", str(tmp_path / "no.yaml")), capsys,
            r"no such config file: .*no\.yaml")
