"""Compact checkpoints: only trained tensors, exact reload, base fingerprint, clear errors, exports, predict."""

import argparse
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import toy_batches
from freezetune.cli import export as export_cli
from freezetune.cli import predict as predict_cli
from freezetune.core.errors import FreezetuneError
from freezetune.core.model import load_classifier
from freezetune.io.checkpoint import (
    META_FILE,
    TENSORS_FILE,
    base_fingerprint,
    load_checkpoint,
    save_checkpoint,
)
from freezetune.io.export import export_hf, export_peft
from freezetune.runs.predict import predict_file
from freezetune.training.finetuner import Finetuner

LABELS3 = ["a", "b", "c"]


def make_checkpoint(folder, base_dir, strategy, *, pooling="mean", labels=LABELS3):
    """Train a tiny classifier a few steps and save its checkpoint; return (model, meta)."""
    torch.manual_seed(0)
    model = load_classifier(base_dir, len(labels), pooling=pooling)
    fingerprint = base_fingerprint(model.backbone)
    tuner = Finetuner(model, strategy, progress=False, lr=1e-2, max_steps=3, warmup_ratio=0.0)
    tuner.fit(toy_batches(n=24, num_labels=len(labels)))
    meta = save_checkpoint(
        folder, tuner.model, tuner.plan, base_path=base_dir, gguf_file=None,
        base_fingerprint=fingerprint, label_names=labels,
        config={"strategy": strategy, "text_column": "text", "max_length": 32},
    )
    return tuner.model.eval(), meta


def batch():
    b = dict(toy_batches(n=8)[0])
    b.pop("labels")
    b["attention_mask"][0, 5:] = 0  # make sure padding is exercised
    return b


@torch.no_grad()
def logits_of(model, inputs):
    out = model(**inputs)
    return (out.logits if hasattr(out, "logits") else out).float()


@pytest.fixture(scope="module")
def top_k(tiny_model_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    (run / "config.yaml").write_text("strategy: top_k:1\n")  # marks a run folder
    model, meta = make_checkpoint(run / "checkpoint", tiny_model_dir, "top_k:1")
    return run, model, meta


@pytest.fixture(scope="module")
def cls_ckpt(tiny_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cls") / "ckpt"
    model, meta = make_checkpoint(folder, tiny_model_dir, "top_k:1", pooling="cls")
    return folder, model, meta


@pytest.fixture(scope="module")
def lora_ckpt(tiny_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("lora") / "ckpt"
    model, meta = make_checkpoint(folder, tiny_model_dir, "lora:r=4:blocks=2,3")
    return folder, model, meta


# ---------------------------------------------------------------------- what is saved
def test_checkpoint_holds_only_trained_tensors_and_is_small(top_k):
    run, model, meta = top_k
    trained = [n for n, p in model.named_parameters() if p.requires_grad]
    assert meta["tensors"] == trained
    assert all(n.startswith(("backbone.encoder.layer.3.", "classifier.")) for n in trained)
    assert not any("embeddings" in n for n in meta["tensors"])
    from safetensors.torch import load_file

    assert sorted(load_file(str(run / "checkpoint" / TENSORS_FILE))) == sorted(trained)
    size = (run / "checkpoint" / TENSORS_FILE).stat().st_size
    assert meta["checkpoint_bytes"] == size
    total = sum(p.numel() for p in model.parameters())
    assert meta["full_model_bytes"] == 4 * total
    assert size < meta["full_model_bytes"] / 20  # one block + head of a 4-block model with a 30k vocab
    on_disk = json.loads((run / "checkpoint" / META_FILE).read_text())
    assert on_disk["plan"]["blocks"] == [3] and on_disk["label_names"] == LABELS3
    assert on_disk["pooling"] == "mean" and on_disk["config"]["max_length"] == 32
    assert not list(run.glob(".checkpoint.tmp-*"))  # staging folder renamed away


def test_load_gives_identical_logits_from_run_or_checkpoint_folder(top_k):
    run, model, _ = top_k
    inputs = batch()
    expected = logits_of(model, inputs)
    for where in (run, run / "checkpoint"):
        loaded, tokenizer, meta = load_checkpoint(where)
        assert not loaded.training and tokenizer.pad_token is not None
        assert torch.equal(logits_of(loaded, inputs), expected)


def test_fingerprint_is_stable_and_sensitive(tiny_model_dir):
    a = load_classifier(tiny_model_dir, 2, pooling="mean").backbone
    b = load_classifier(tiny_model_dir, 2, pooling="mean").backbone
    assert base_fingerprint(a) == base_fingerprint(b)
    with torch.no_grad():
        b.encoder.layer[0].output.dense.bias[0] += 1e-3
    assert base_fingerprint(a) != base_fingerprint(b)


def test_saving_again_replaces_the_checkpoint(top_k, tmp_path):
    run, model, meta = top_k
    folder = tmp_path / "ckpt"
    shutil.copytree(run / "checkpoint", folder)
    again = save_checkpoint(
        folder, model, _plan(meta), base_path=meta["base_model"],
        gguf_file=None, base_fingerprint=meta["base_fingerprint"], label_names=LABELS3, config={},
    )
    assert again["tensors"] == meta["tensors"] and json.loads((folder / META_FILE).read_text())["config"] == {}
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep me")
    with pytest.raises(FreezetuneError, match="not empty"):
        save_checkpoint(user, model, _plan(meta), base_path=meta["base_model"], gguf_file=None,
                        base_fingerprint="x", label_names=LABELS3, config={})
    assert (user / "notes.txt").read_text() == "keep me"


def _plan(meta):
    from freezetune.core.plan import Plan

    return Plan.from_dict(meta["plan"])


# ---------------------------------------------------------------------- refusals
def test_different_base_is_refused(top_k, tmp_path, tiny_model_dir):
    from transformers import BertModel

    run, _, meta = top_k
    other = tmp_path / "other-base"
    base = BertModel.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        base.embeddings.word_embeddings.weight[7] += 0.5
    base.save_pretrained(other)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt"):
        if (Path(tiny_model_dir) / name).exists():
            shutil.copy(Path(tiny_model_dir) / name, other / name)
    with pytest.raises(FreezetuneError, match=r"different base model \(fingerprint .* != .*--model") as info:
        load_checkpoint(run, base_path=str(other))
    assert "\n" not in str(info.value) and meta["base_fingerprint"] in str(info.value)


def test_truncated_tensors_file_is_a_clear_error(top_k, tmp_path):
    folder = tmp_path / "ckpt"
    shutil.copytree(top_k[0] / "checkpoint", folder)
    data = (folder / TENSORS_FILE).read_bytes()
    (folder / TENSORS_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(FreezetuneError, match="corrupted or truncated"):
        load_checkpoint(folder)
    (folder / TENSORS_FILE).write_bytes(data[:5])
    with pytest.raises(FreezetuneError, match="corrupted or truncated"):
        load_checkpoint(folder)


def test_corrupted_json_missing_and_foreign_folders(top_k, tmp_path):
    with pytest.raises(FreezetuneError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FreezetuneError, match="not a freezetune checkpoint"):
        load_checkpoint(empty)
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text("{}")
    with pytest.raises(FreezetuneError, match="holds no checkpoint"):
        load_checkpoint(run)
    folder = tmp_path / "ckpt"
    shutil.copytree(top_k[0] / "checkpoint", folder)
    text = (folder / META_FILE).read_text()
    (folder / META_FILE).write_text(text[: len(text) // 2])
    with pytest.raises(FreezetuneError, match="not valid JSON"):
        load_checkpoint(folder)


def test_shape_mismatch_is_refused(top_k, tmp_path):
    folder = tmp_path / "ckpt"
    shutil.copytree(top_k[0] / "checkpoint", folder)
    meta = json.loads((folder / META_FILE).read_text())
    meta["label_names"] = ["x", "y"]  # a 2-label head cannot take the saved 3-label classifier
    (folder / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(FreezetuneError, match=r"classifier.weight has shape \(3, 32\) in the checkpoint but \(2, 32\)"):
        load_checkpoint(folder)


# ---------------------------------------------------------------------- export
def test_export_hf_cls_pooling_is_native_bert(cls_ckpt, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder, model, _ = cls_ckpt
    to = export_hf(folder, tmp_path / "hf")
    config = json.loads((to / "config.json").read_text())
    assert config["architectures"] == ["BertForSequenceClassification"] and "auto_map" not in config
    assert config["id2label"] == {"0": "a", "1": "b", "2": "c"} and config["label2id"]["c"] == 2
    assert not (to / "modeling_freezetune.py").exists()
    hf = AutoModelForSequenceClassification.from_pretrained(str(to)).eval()
    assert type(hf).__name__ == "BertForSequenceClassification"
    inputs = batch()
    assert torch.allclose(logits_of(hf, inputs), logits_of(model, inputs), atol=1e-5)
    tokenizer = AutoTokenizer.from_pretrained(str(to))
    assert tokenizer("a fine film")["input_ids"][0] == tokenizer.cls_token_id


def test_export_hf_mean_pooling_uses_custom_code(top_k, tmp_path):
    from transformers import AutoModelForSequenceClassification

    run, model, _ = top_k
    to = export_hf(run, tmp_path / "hf")
    config = json.loads((to / "config.json").read_text())
    assert config["pooling"] == "mean" and "AutoModelForSequenceClassification" in config["auto_map"]
    assert (to / "modeling_freezetune.py").is_file() and (to / "model.safetensors").is_file()
    hf = AutoModelForSequenceClassification.from_pretrained(str(to), trust_remote_code=True).eval()
    inputs = batch()
    assert torch.allclose(logits_of(hf, inputs), logits_of(model, inputs), atol=1e-5)
    assert hf.config.id2label == {0: "a", 1: "b", 2: "c"}


def test_export_refuses_a_non_empty_folder(top_k, tmp_path):
    target = tmp_path / "mine"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(FreezetuneError, match="not empty"):
        export_hf(top_k[0], target)
    assert [p.name for p in target.iterdir()] == ["keep.txt"]
    with pytest.raises(FreezetuneError, match="without LoRA"):
        export_peft(top_k[0], tmp_path / "peft")


# ---------------------------------------------------------------------- LoRA
def test_lora_checkpoint_round_trip_and_exports(lora_ckpt, tmp_path, tiny_model_dir):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    folder, model, meta = lora_ckpt
    names = meta["tensors"]
    assert {n.split(".")[3] for n in names if "lora_" in n} == {"2", "3"}
    assert all("lora_" in n or n.startswith("classifier.") for n in names)
    assert meta["checkpoint_bytes"] < meta["full_model_bytes"] / 50
    inputs = batch()
    expected = logits_of(model, inputs)
    loaded, _, _ = load_checkpoint(folder)
    assert torch.equal(logits_of(loaded, inputs), expected)

    hf = AutoModelForSequenceClassification.from_pretrained(
        str(export_hf(folder, tmp_path / "hf")), trust_remote_code=True
    ).eval()
    assert not any("lora" in n for n, _ in hf.named_parameters())
    assert torch.allclose(logits_of(hf, inputs), expected, atol=1e-5)

    # The PEFT export loads the documented way: the adapter (head in modules_to_save) on the exported base.
    peft_dir = export_peft(folder, tmp_path / "peft")
    assert (peft_dir / "adapter_config.json").is_file() and not (peft_dir / "extra_trained.safetensors").exists()
    base = AutoModelForSequenceClassification.from_pretrained(str(peft_dir / "base"), trust_remote_code=True)
    adapted = PeftModel.from_pretrained(base, str(peft_dir)).eval()
    assert torch.allclose(logits_of(adapted, inputs), expected, atol=1e-5)


# ---------------------------------------------------------------------- predict
@pytest.fixture(scope="module")
def sentiment_ckpt(tiny_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("senti") / "ckpt"
    make_checkpoint(folder, tiny_model_dir, "head_only", labels=["neg", "pos"])
    return folder


def test_predict_file_writes_labels_and_probabilities(sentiment_ckpt, sentiment_csv, tmp_path):
    out = predict_file(sentiment_ckpt, sentiment_csv, text_column="text", output_path=tmp_path / "p.csv")
    frame = pd.read_csv(out)
    source = pd.read_csv(sentiment_csv)
    assert list(frame.columns) == ["text", "label", "prediction", "prob_neg", "prob_pos"]
    assert len(frame) == len(source) and frame["text"].tolist() == source["text"].tolist()
    assert set(frame["prediction"]) <= {"neg", "pos"}
    assert ((frame["prob_neg"] + frame["prob_pos"] - 1).abs() < 1e-5).all()
    picked = frame[["prob_neg", "prob_pos"]].to_numpy().argmax(1)
    assert [["neg", "pos"][i] for i in picked] == frame["prediction"].tolist()
    with pytest.raises(FreezetuneError, match="already exists"):
        predict_file(sentiment_ckpt, sentiment_csv, text_column="text", output_path=out)
    with pytest.raises(FreezetuneError, match="no column 'review'; its columns are: text, label"):
        predict_file(sentiment_ckpt, sentiment_csv, text_column="review", output_path=tmp_path / "q.csv")


def test_cli_glue_predict_and_export(sentiment_ckpt, sentiment_csv, tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="freezetune")
    commands = parser.add_subparsers(dest="command", required=True)
    predict_cli.add_parser(commands)
    export_cli.add_parser(commands)
    out = tmp_path / "pred.csv"
    args = parser.parse_args(["predict", "--checkpoint", str(sentiment_ckpt), "--data", str(sentiment_csv),
                              "--output", str(out)])
    assert args.run(args) == 0 and out.is_file()
    assert str(out) in capsys.readouterr().out
    args = parser.parse_args(["predict", "--checkpoint", str(sentiment_ckpt), "--data", str(sentiment_csv),
                              "--output", str(out), "--overwrite"])
    assert args.run(args) == 0
    capsys.readouterr()
    args = parser.parse_args(["export", "--checkpoint", str(sentiment_ckpt), "--to", str(tmp_path / "hf")])
    assert args.run(args) == 0
    line = capsys.readouterr().out.strip()
    assert "\n" not in line and "trust_remote_code=True" in line
    args = parser.parse_args(["export", "--checkpoint", str(sentiment_ckpt), "--to", str(tmp_path / "p"),
                              "--format", "peft"])
    with pytest.raises(FreezetuneError, match="without LoRA"):
        args.run(args)
    for action in parser._subparsers._group_actions[0].choices["predict"]._actions:
        assert action.help, action.dest


# ---------------------------------------------------------------------- another backbone
@pytest.fixture(scope="module")
def llama_dir(tiny_model_dir, tmp_path_factory):
    """A tiny Llama decoder (no native classifier with our pooling) with the MiniLM tokenizer."""
    from transformers import LlamaConfig, LlamaModel

    folder = tmp_path_factory.mktemp("tiny-llama")
    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                         intermediate_size=32, vocab_size=30522, max_position_embeddings=64, pad_token_id=0)
    LlamaModel(config).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt"):
        if (Path(tiny_model_dir) / name).exists():
            shutil.copy(Path(tiny_model_dir) / name, folder / name)
    return str(folder)


def test_export_hf_decoder_last_pooling(llama_dir, tmp_path):
    from transformers import AutoModelForSequenceClassification

    model, meta = make_checkpoint(tmp_path / "ckpt", llama_dir, "top_k:1", pooling="last")
    assert all(n.startswith(("backbone.layers.1.", "backbone.norm.", "classifier.")) for n in meta["tensors"])
    inputs = batch()
    loaded, _, _ = load_checkpoint(tmp_path / "ckpt")
    assert torch.equal(logits_of(loaded, inputs), logits_of(model, inputs))
    to = export_hf(tmp_path / "ckpt", tmp_path / "hf")
    hf = AutoModelForSequenceClassification.from_pretrained(str(to), trust_remote_code=True).eval()
    assert json.loads((to / "config.json").read_text())["inner_config"]["model_type"] == "llama"
    assert torch.allclose(logits_of(hf, inputs), logits_of(model, inputs), atol=1e-5)


def test_an_untrained_head_is_saved_so_a_reload_predicts_the_same(tmp_path, tiny_model_dir):
    folder = tmp_path / "ckpt"
    model, meta = make_checkpoint(folder, tiny_model_dir, "top_k:1:head=false")
    assert {"classifier.weight", "classifier.bias"} <= set(meta["tensors"])
    inputs = batch()
    torch.manual_seed(123)  # a reload must not depend on the global seed
    loaded, _, _ = load_checkpoint(folder)
    assert torch.equal(logits_of(loaded, inputs), logits_of(model, inputs))
