"""Bad strategies, models and checkpoints through the CLI, and the one-line promise checked in a real process."""

import json
import os
import shutil
import subprocess
import sys

import pytest
from bad_input import refused, train_args, write

from freezetune.cli.main import main

# ---------------------------------------------------------------------- strategies (refused before any load)
STRATEGIES = {
    "unknown_strategy": ("lowr_half", r"unknown strategy 'lowr_half' \(did you mean 'lower_half'\?\); known: "),
    "unknown_schedule": ("gradual_unfreez", r"unknown strategy 'gradual_unfreez' \(did you mean 'gradual_unfreeze'"),
    "unknown_scorer": ("auto:scorer=gradiant", r"unknown scorer 'gradiant' .*\(did you mean 'gradient'\?\)"),
    "unknown_strategy_option": ("top_k:kk=2", r"strategy 'top_k' has no option 'kk' \(did you mean 'k'\?\)"),
    "unknown_option_value": ("lift:order=topdown", r"unknown order 'topdown' .*\(did you mean 'top_down'\?\)"),
    "malformed_spec": ("top_k:2:3", r"malformed strategy spec 'top_k:2:3': '3' needs a key"),
    "option_of_the_wrong_type": ("top_k:two", r"option k='two' should be int"),
    "budget_zero": ("auto:budget=0", r"budget must be positive"),
    "budget_over_the_blocks": ("auto:budget=9", r"budget of 9 blocks exceeds this model's 4 blocks"),
    "budget_below_one_block": ("auto:budget=0.0001", r"budget 0\.0001 .* is smaller than one block"),
    "block_out_of_range": ("layers:1,9", r"block 9 is out of range: this model has blocks 0\.\.3"),
    "top_k_over_the_blocks": ("top_k:7", r"top_k needs 0 <= k <= 4 \(this model has 4 blocks\), got k=7"),
}


@pytest.mark.parametrize("case", list(STRATEGIES))
def test_bad_strategy(case, tiny_model_dir, sentiment_csv, tmp_path, capsys, monkeypatch):
    import freezetune.runs.run as run

    def no_loading(*args, **kwargs):
        raise AssertionError("the model or data loaded before the strategy was checked")

    monkeypatch.setattr(run, "load_tokenizer", no_loading)
    spec, pattern = STRATEGIES[case]
    out = tmp_path / "run"
    refused(train_args(tiny_model_dir, sentiment_csv, out, "--strategy", spec), capsys, pattern)
    assert not out.exists()


# ---------------------------------------------------------------------- model folders
def test_model_folder_that_does_not_exist(sentiment_csv, tmp_path, capsys):
    refused(train_args(tmp_path / "nowhere", sentiment_csv, tmp_path / "run"), capsys,
            r"no such model folder: .*nowhere; give a folder holding config\.json")


def test_model_folder_that_is_not_a_model(sentiment_csv, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    refused(train_args(tmp_path / "empty", sentiment_csv, tmp_path / "run"), capsys,
            r"empty is not a model folder: it has no config\.json")


def remote_model(folder):
    folder.mkdir()
    write(folder / "config.json", json.dumps({"model_type": "homemade", "architectures": ["HomemadeModel"],
                                              "auto_map": {"AutoConfig": "configuration_homemade.HomemadeConfig"}}))
    return folder


def test_model_that_needs_remote_code(sentiment_csv, tmp_path, capsys):
    model = remote_model(tmp_path / "homemade")
    refused(train_args(model, sentiment_csv, tmp_path / "run"), capsys,
            r"homemade needs its own Python code to load .* pass --trust-remote-code$")


def test_trust_remote_code_reaches_transformers(tmp_path, monkeypatch):
    from transformers import AutoConfig

    from freezetune.core.model import load_config

    seen = {}

    def record(path, **kwargs):
        seen.update(kwargs)
        return "config"

    monkeypatch.setattr(AutoConfig, "from_pretrained", record)
    model = remote_model(tmp_path / "homemade")
    assert load_config(model, trust_remote_code=True) == "config" and seen["trust_remote_code"] is True
    assert load_config(model) == "config" and seen["trust_remote_code"] is False


# ---------------------------------------------------------------------- checkpoints (predict, export)
@pytest.fixture(scope="module")
def trained(tiny_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("trained")
    data = folder / "data.csv"
    data.write_text("text,label\n" + "".join(f"a nice film {i},pos\na bad film {i},neg\n" for i in range(8)))
    assert main(train_args(tiny_model_dir, data, folder / "run", "--strategy", "head_only")) == 0
    return folder / "run", data


def command(kind, checkpoint, data, tmp_path, *extra):
    if kind == "predict":
        return ["predict", "--checkpoint", str(checkpoint), "--data", str(data), "--output",
                str(tmp_path / "out.csv"), *extra]
    return ["export", "--checkpoint", str(checkpoint), "--to", str(tmp_path / "out"), *extra]


@pytest.mark.parametrize("kind", ["predict", "export"])
def test_missing_checkpoint(kind, trained, tmp_path, capsys):
    refused(command(kind, tmp_path / "gone", trained[1], tmp_path), capsys, r"no such checkpoint or run folder: ")
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind", ["predict", "export"])
def test_checkpoint_from_another_base(kind, trained, tmp_path, capsys):
    from transformers import BertConfig, BertModel

    other = tmp_path / "other-base"
    BertModel(BertConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
                         vocab_size=30522, max_position_embeddings=128)).save_pretrained(other)  # new random weights
    run, data = trained
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(json.loads((run / "checkpoint" / "checkpoint.json").read_text())["base_model"] + "/" + name, other)
    capsys.readouterr()
    code = main(command(kind, run, data, tmp_path, "--model", str(other)))
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("freezetune: error:")]
    assert code == 2 and len(errors) == 1 and "Traceback" not in err
    assert "was trained on a different base model (fingerprint" in errors[0] and "--model" in errors[0]
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind", ["predict", "export"])
def test_truncated_checkpoint(kind, trained, tmp_path, capsys):
    run, data = trained
    cut = tmp_path / "cut"
    shutil.copytree(run / "checkpoint", cut)
    tensors = cut / "trained.safetensors"
    tensors.write_bytes(tensors.read_bytes()[: tensors.stat().st_size // 2])
    refused(command(kind, cut, data, tmp_path), capsys, r"checkpoint .*cut is corrupted or truncated")
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "out").exists()


def test_predict_column_with_a_close_name(trained, tmp_path, capsys):
    run, _ = trained
    data = write(tmp_path / "new.csv", "txt\nwhat a film\n")
    refused(command("predict", run, data, tmp_path), capsys, r"has no column 'text' \(did you mean 'txt'\?\)")
    assert not (tmp_path / "out.csv").exists()


# ---------------------------------------------------------------------- a real process: the error is all it prints
def freezetune(*args):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.abspath("src"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "freezetune.cli.main", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=300)


@pytest.mark.parametrize("case", ["missing_file", "block_out_of_range", "unknown_strategy", "single_class",
                                  "bad_yaml_key", "mistyped_flag", "floor_not_measured"])
def test_error_line_is_the_only_output_of_the_process(case, tiny_model_dir, sentiment_csv, tmp_path):
    data, extra = sentiment_csv, []
    if case == "missing_file":
        data = tmp_path / "nope.csv"
    elif case == "block_out_of_range":
        extra = ["--strategy", "layers:99"]
    elif case == "unknown_strategy":
        extra = ["--strategy", "everything"]
    elif case == "single_class":
        data = write(tmp_path / "one.csv", "text,label\n" + "a nice film,pos\n" * 12)
    elif case == "bad_yaml_key":
        extra = ["--config", str(write(tmp_path / "c.yaml", "learning_rate: 0.1\n"))]
    elif case == "mistyped_flag":
        extra = ["--epoks", "2"]
    elif case == "floor_not_measured":  # train_args passes --retention none
        extra = ["--strategy", "auto:retention=0.8"]
    out = tmp_path / "run"
    result = freezetune(*train_args(tiny_model_dir, data, out, *extra))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("freezetune: error: "), result.stderr
    assert not out.exists()
