"""`freezetune plan`: a resolved plan written for another tool, in the names of the class that tool loads."""

import json

import pytest
import yaml
from bad_input import refused

from freezetune.cli.main import main
from freezetune.cli.plan import FORMAT_NAMES
from freezetune.integrations.plan_exports import FILES, FORMATS
from tool_rules import axolotl_trains


def test_format_names_in_help_are_the_formats():
    assert FORMAT_NAMES == tuple(FORMATS) == tuple(FILES)


def test_static_plan_for_axolotl_reads_only_the_config(tiny_decoder_dir, tmp_path, capsys):
    out = tmp_path / "plan"
    args = ["plan", "--strategy", "top_k:2", "--task", "causal-lm", "--model", tiny_decoder_dir, "--format", "axolotl",
            "--output", str(out)]
    assert main(args) == 0
    stdout = capsys.readouterr().out.splitlines()
    assert stdout[0].startswith("plan: top_k:2: blocks 2-3, head; ")
    assert stdout[1] == f"wrote {out / 'axolotl.yaml'}"
    text = (out / "axolotl.yaml").read_text()
    assert text.startswith(f"# freezetune plan for axolotl: top_k:2 on {tiny_decoder_dir}\n")
    assert yaml.safe_load(text)["unfrozen_parameters"] == ["^model.layers.2.", "^model.layers.3.",
                                                           "^model.norm.weight$"]


def test_auto_scores_the_data_and_writes_the_names_of_the_hugging_face_classifier(tiny_model_dir, sentiment_csv,
                                                                                   tmp_path, capsys):
    out = tmp_path / "plan"
    assert main(["plan", "--strategy", "auto:gradient:budget=2", "--model", tiny_model_dir, "--data",
                 str(sentiment_csv), "--format", "json", "--output", str(out), "--samples", "32"]) == 0
    saved = json.loads((out / "plan.json").read_text())
    assert saved["task"] == "classification" and saved["spec"].startswith("auto:gradient:budget=2")
    blocks = {int(n.split(".")[3]) for n in saved["trains"] if n.startswith("bert.encoder.layer.")}
    assert len(blocks) <= 2
    assert all(n.startswith(("bert.", "classifier.")) for n in saved["trains"])  # BertForSequenceClassification
    readme = (out / "README.md").read_text()
    assert readme.startswith("# freezetune plan for JSON: auto:gradient:budget=2") and "- auto chose " in readme


def test_a_plan_the_tool_cannot_express_is_refused_and_nothing_is_written(tiny_decoder_dir, tmp_path, capsys):
    out = tmp_path / "plan"
    refused(["plan", "--strategy", "layers:0,2:head=false", "--task", "causal-lm", "--model", tiny_decoder_dir,
             "--format", "llama-factory", "--output", str(out)], capsys,
            r"^freezetune: error: LLaMA-Factory cannot express this plan \(it trains the first or the last n blocks "
            r"only\); the nearest plan it can: --strategy layers:0-2:head=false$")
    assert not out.exists()


@pytest.mark.parametrize("args,pattern", [
    (["--strategy", "lisa:2", "--format", "axolotl", "--task", "causal-lm"],
     r"lisa is a schedule .*FreezetuneCallback\('lisa'\)"),
    (["--strategy", "top_k:2", "--format", "axolotl"], r"axolotl fine-tunes causal LMs: pass --task causal-lm"),
    (["--strategy", "top_k:2", "--format", "yaml"], r"argument --format: invalid choice: 'yaml'"),
    (["--strategy", "top_k:9", "--format", "json", "--task", "causal-lm"], r"top_k needs 0 <= k <= 4"),
    (["--strategy", "auto", "--format", "json", "--samples", "0"], r"--samples must be at least 1"),
    (["--strategy", "top_k:2", "--format", "json", "--model", "/nope"], r"no such model folder: /nope"),
    (["--strategy", "top_k:x", "--format", "json"], r"malformed strategy spec 'top_k:x'"),
])
def test_bad_requests_are_one_line(tiny_decoder_dir, tmp_path, capsys, args, pattern):
    refused(["plan", "--model", tiny_decoder_dir, "--output", str(tmp_path / "plan"), *args], capsys, pattern)
    assert not (tmp_path / "plan").exists()


def test_a_file_already_there_is_never_overwritten(tiny_decoder_dir, tmp_path, capsys):
    (tmp_path / "axolotl.yaml").write_text("mine\n")
    refused(["plan", "--strategy", "top_k:2", "--task", "causal-lm", "--model", tiny_decoder_dir, "--format", "axolotl",
             "--output", str(tmp_path)], capsys, r"axolotl\.yaml exists: choose another --output")
    assert (tmp_path / "axolotl.yaml").read_text() == "mine\n"


@pytest.mark.integration
def test_smollm2_plans_for_axolotl_and_llama_factory_train_exactly_the_plan(tmp_path, capsys):
    """The embedded SmolLM2: 30 blocks, so block 2's pattern must not reach blocks 20-29."""
    from freezetune.integrations.target import target_model
    from freezetune.io import defaults

    folder, gguf = defaults.smollm2_gguf()
    names = [n for n, _ in target_model(folder, causal_lm=True, gguf_file=gguf).named_parameters()]
    assert main(["plan", "--strategy", "layers:2,29", "--task", "causal-lm", "--format", "axolotl",
                 "--output", str(tmp_path / "a")]) == 0
    patterns = yaml.safe_load((tmp_path / "a" / "axolotl.yaml").read_text())["unfrozen_parameters"]
    trained = axolotl_trains(names, patterns)
    assert {n.split(".")[2] for n in trained if n.startswith("model.layers.")} == {"2", "29"}
    assert len(trained) == 2 * 9 + 1  # two blocks of nine tensors, the final norm
    assert main(["plan", "--strategy", "top_k:4:head=false", "--task", "causal-lm", "--format", "llama-factory",
                 "--output", str(tmp_path / "l")]) == 0
    keys = yaml.safe_load((tmp_path / "l" / "llama_factory.yaml").read_text())
    assert keys == {"finetuning_type": "freeze", "freeze_trainable_layers": 4, "freeze_trainable_modules": "all"}
