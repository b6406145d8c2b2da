"""Exports judged by the standard loaders: PEFT adapters and HF folders give freezetune's outputs exactly.

Checkpoints are built directly (adapters and trained tensors set to random values, so every
part matters), then loaded back by freezetune (the reference: what ``freezetune predict`` runs)
and by transformers / PEFT the documented way, never by freezetune's loader.
"""

from __future__ import annotations

import argparse
import json
import re
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import tiny_gpt2, tiny_llama
from freezetune.cli import export as export_cli
from freezetune.core.causal_lm import load_causal_lm
from freezetune.core.config import CAUSAL_LM, CLASSIFICATION
from freezetune.core.errors import FreezetuneError
from freezetune.core.layout import LayerMap
from freezetune.core.lora import add_lora
from freezetune.core.model import load_classifier
from freezetune.core.plan import LoraSpec, Plan
from freezetune.io.checkpoint import base_fingerprint, load_checkpoint, save_checkpoint
from freezetune.io.export import export_hf, export_peft

LABELS = ["a", "b", "c"]
ID2LABEL = dict(enumerate(LABELS))


def make_checkpoint(folder, base_dir, plan, *, task=CLASSIFICATION, pooling="mean", config=None):
    """Adapt the base as ``plan`` says, set every trainable tensor to random values, save the checkpoint."""
    torch.manual_seed(0)
    if task == CAUSAL_LM:
        model = load_causal_lm(base_dir)
    else:
        model = load_classifier(base_dir, len(LABELS), pooling=pooling)
    fingerprint = base_fingerprint(model.backbone)
    layers = LayerMap.from_model(model)
    if plan.lora is not None:
        model, layers = add_lora(model, plan.lora, layers)
    plan.apply(model, layers)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:  # LoRA B starts at zero: without this the adapters would do nothing
                param.add_(0.1 * torch.randn(param.shape, generator=generator))
    return save_checkpoint(
        folder, model, plan, base_path=base_dir, gguf_file=None, base_fingerprint=fingerprint,
        label_names=None if task == CAUSAL_LM else LABELS, config=config or {}, task=task,
    )


def batch(vocab=100):
    generator = torch.Generator().manual_seed(3)
    ids = torch.randint(5, vocab, (4, 10), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    mask[3, 4:] = 0
    return {"input_ids": ids * mask, "attention_mask": mask}


@torch.no_grad()
def logits(model, inputs):
    out = model(**inputs)
    return (out.logits if hasattr(out, "logits") else out).float()


def freezetune_model(folder):
    return load_checkpoint(folder)[0].eval()


class NoMissingKeys:
    """Fails when PEFT or transformers warn that adapter keys were missing, or tied weights untied, on load."""

    def __enter__(self):
        self.caught = warnings.catch_warnings(record=True)
        self.records = self.caught.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc):
        self.caught.__exit__(*exc)
        missing = [str(w.message) for w in self.records if re.search("missing|weight_tying", str(w.message), re.I)]
        assert not missing, missing


def card_code(folder: Path) -> dict:
    """Run the first Python block of the export's README.md (the documented loading code)."""
    card = (folder / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", card, re.S).group(1)
    namespace: dict = {}
    exec(code, namespace)  # noqa: S102 - our own generated snippet, run as a user would
    return namespace


# ---------------------------------------------------------------------- classification
@pytest.fixture(scope="module")
def native_ckpt(tiny_model_dir, tmp_path_factory):
    """BERT, CLS pooling: LoRA on block 2, block 3 fully trained, head (pooler + classifier), in a run folder."""
    run = tmp_path_factory.mktemp("run")
    (run / "config.yaml").write_text("strategy: custom\n")
    (run / "metrics.json").write_text(json.dumps({
        "reported_split": "test",
        "test": {"accuracy": 0.75, "macro_f1": 0.7, "mcc": 0.5, "n": 20, "per_class": {}},
    }))
    plan = Plan(lora=LoraSpec(r=4, alpha=8, blocks=(2,)), blocks=(3,), spec="lora:r=4:blocks=2 + block 3")
    config = {"data": "/somewhere/train.csv", "eval_data": None, "test_data": "/somewhere/test.csv"}
    make_checkpoint(run / "checkpoint", tiny_model_dir, plan, pooling="cls", config=config)
    return run


@pytest.fixture(scope="module")
def mean_ckpt(tiny_model_dir, tmp_path_factory):
    """The default MiniLM's shape: mean pooling (no stock class), LoRA on every block and the head."""
    folder = tmp_path_factory.mktemp("mean") / "ckpt"
    make_checkpoint(folder, tiny_model_dir, Plan(lora=LoraSpec(r=4, alpha=8), spec="lora:r=4"), pooling="mean")
    return folder


def test_peft_native_bert_loads_with_the_task_class(native_ckpt, tiny_model_dir, tmp_path):
    from peft import AutoPeftModelForSequenceClassification, PeftModel
    from transformers import AutoModelForSequenceClassification

    to = export_peft(native_ckpt, tmp_path / "adapter")
    config = json.loads((to / "adapter_config.json").read_text())
    assert config["task_type"] == "SEQ_CLS" and config["base_model_name_or_path"] == tiny_model_dir
    assert all(t.startswith("bert.encoder.layer.2.") for t in config["target_modules"])
    assert {"classifier", "bert.pooler", "bert.encoder.layer.3"} <= set(config["modules_to_save"])
    assert len(set(config["modules_to_save"])) == len(config["modules_to_save"])
    keys = set(load_file(str(to / "adapter_model.safetensors")))
    assert "base_model.model.classifier.weight" in keys and "base_model.model.bert.pooler.dense.weight" in keys
    assert "base_model.model.bert.encoder.layer.3.output.dense.weight" in keys
    assert not (to / "extra_trained.safetensors").exists() and not (to / "base").exists()

    inputs = batch()
    ours = logits(freezetune_model(native_ckpt), inputs)
    with NoMissingKeys():
        base = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, id2label=ID2LABEL,
                                                                  dtype=torch.float32)
        theirs = PeftModel.from_pretrained(base, str(to)).eval()
    assert torch.allclose(logits(theirs, inputs), ours, atol=1e-5, rtol=0)
    assert torch.equal(logits(theirs, inputs).argmax(-1), ours.argmax(-1))
    assert theirs.config.id2label == ID2LABEL
    with NoMissingKeys():
        auto = AutoPeftModelForSequenceClassification.from_pretrained(str(to), id2label=ID2LABEL,
                                                                      dtype=torch.float32).eval()
    assert torch.allclose(logits(auto, inputs), ours, atol=1e-5, rtol=0)
    documented = card_code(to)["model"]
    assert torch.allclose(logits(documented, inputs), ours, atol=1e-5, rtol=0)


def test_peft_mean_pooling_applies_to_its_own_base(mean_ckpt, tmp_path):
    from peft import AutoPeftModelForSequenceClassification, PeftModel
    from transformers import AutoModelForSequenceClassification

    to = export_peft(mean_ckpt, tmp_path / "adapter")
    config = json.loads((to / "adapter_config.json").read_text())
    assert config["task_type"] == "SEQ_CLS" and config["modules_to_save"][0] == "classifier"
    assert all(t.startswith("backbone.encoder.layer.") for t in config["target_modules"])
    assert config["base_model_name_or_path"] == str((to / "base").resolve())
    base_config = json.loads((to / "base" / "config.json").read_text())
    assert base_config["pooling"] == "mean" and "AutoModelForSequenceClassification" in base_config["auto_map"]
    assert (to / "base" / "modeling_freezetune.py").is_file() and (to / "base" / "tokenizer.json").is_file()

    inputs = batch()
    ours = logits(freezetune_model(mean_ckpt), inputs)
    with NoMissingKeys():
        base = AutoModelForSequenceClassification.from_pretrained(str(to / "base"), trust_remote_code=True)
        theirs = PeftModel.from_pretrained(base, str(to)).eval()
    assert torch.allclose(logits(theirs, inputs), ours, atol=1e-5, rtol=0)
    assert torch.equal(logits(theirs, inputs).argmax(-1), ours.argmax(-1))
    untrained = logits(AutoModelForSequenceClassification.from_pretrained(str(to / "base"), trust_remote_code=True)
                       .eval(), inputs)
    assert not torch.allclose(untrained, ours, atol=1e-3)  # base/ is the base: the adapter does the rest
    with NoMissingKeys():
        auto = AutoPeftModelForSequenceClassification.from_pretrained(str(to), trust_remote_code=True).eval()
    assert torch.allclose(logits(auto, inputs), ours, atol=1e-5, rtol=0)
    assert torch.allclose(logits(card_code(to)["model"], inputs), ours, atol=1e-5, rtol=0)


def test_model_card_names_base_plan_data_metrics_and_loading_code(native_ckpt, tiny_model_dir, tmp_path):
    for fmt, export in (("hf", export_hf), ("peft", export_peft)):
        to = export(native_ckpt, tmp_path / fmt)
        card = (to / "README.md").read_text()
        info = json.loads((to / "freezetune.json").read_text())
        assert tiny_model_dir in card and "`lora:r=4:blocks=2 + block 3`" in card
        assert "block 3 (weights)" in card and "LoRA r=4 on block 2 (query, value)" in card and "head" in card
        assert "train `train.csv`" in card and "test `test.csv`" in card and "/somewhere" not in card
        assert "test split on 20 rows: accuracy 0.75, macro f1 0.7, mcc 0.5" in card
        assert info["load"] in card and info["format"] == fmt and info["task"] == CLASSIFICATION
    hf_info = json.loads((tmp_path / "hf" / "freezetune.json").read_text())
    assert hf_info["load"] == f"AutoModelForSequenceClassification.from_pretrained({str(tmp_path / 'hf')!r})"


def test_card_without_a_run_folder_says_so(mean_ckpt, tmp_path):
    to = export_hf(mean_ckpt, tmp_path / "hf")
    card = (to / "README.md").read_text()
    assert "not recorded (the checkpoint is not inside a run folder" in card
    assert "trust_remote_code=True" in card and "LoRA r=4 on blocks 0, 1, 2, 3" in card
    # The folder's config.json names custom code: the tokenizer needs the flag too, or it asks on stdin.
    assert f"AutoTokenizer.from_pretrained({str(to)!r}, trust_remote_code=True)" in card
    loaded = card_code(to)
    inputs = batch()
    assert torch.allclose(logits(loaded["model"], inputs), logits(freezetune_model(mean_ckpt), inputs), atol=1e-5)
    assert loaded["tokenizer"]("a fine film")["input_ids"][0] == loaded["tokenizer"].cls_token_id


def test_peft_refusals_are_one_clear_line(tiny_model_dir, tmp_path):
    plain = tmp_path / "plain"
    make_checkpoint(plain, tiny_model_dir, Plan(blocks=(3,), spec="top_k:1"))
    with pytest.raises(FreezetuneError, match="without LoRA.*use --format hf"):
        export_peft(plain, tmp_path / "p1")
    # A bias that trained inside a LoRA-adapted layer: PEFT cannot save both for one layer.
    mixed = tmp_path / "mixed"
    plan = Plan(lora=LoraSpec(r=4, blocks=(3,)), blocks=(3,), modules=("bias",), head=True)
    make_checkpoint(mixed, tiny_model_dir, plan)
    with pytest.raises(FreezetuneError, match="also carries a LoRA adapter.*--format hf") as error:
        export_peft(mixed, tmp_path / "p2")
    assert "\n" not in str(error.value)
    assert not (tmp_path / "p1").exists() and not (tmp_path / "p2").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".p")]  # no staging left behind
    hf = export_hf(mixed, tmp_path / "hf")  # the merged export takes it
    assert (hf / "model.safetensors").is_file()


def test_modules_to_save_takes_whole_modules_and_refuses_adapted_layers():
    from transformers import BertConfig, BertForSequenceClassification

    from freezetune.io.export_peft import modules_to_save

    torch.manual_seed(0)
    base = BertForSequenceClassification(BertConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                                    intermediate_size=32, vocab_size=50))
    block = "bert.encoder.layer.1"
    every = {n for n, _ in base.named_parameters() if n.startswith(block + ".")}
    targets = {"bert.encoder.layer.0.attention.self.query"}
    assert modules_to_save(base, every, targets, ("classifier",)) == ["classifier", block]
    biases = {n for n in every if n.endswith(".bias")}  # BitFit: each layer with a trained bias, whole
    chosen = modules_to_save(base, biases, targets)
    assert f"{block}.attention.self.query" in chosen and f"{block}.output.LayerNorm" in chosen
    assert all(c.startswith(block + ".") for c in chosen) and len(chosen) == len(biases)
    with pytest.raises(FreezetuneError, match="also carries a LoRA adapter"):
        modules_to_save(base, {"bert.encoder.layer.0.attention.self.query.bias"}, targets)


def test_cli_prints_the_loading_line(mean_ckpt, native_ckpt, tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="freezetune")
    export_cli.add_parser(parser.add_subparsers(dest="command", required=True))
    lines = {}
    for ckpt, name in ((mean_ckpt, "m"), (native_ckpt, "n")):
        to = tmp_path / name
        args = parser.parse_args(["export", "--checkpoint", str(ckpt), "--to", str(to), "--format", "peft"])
        assert args.run(args) == 0
        lines[name] = capsys.readouterr().out.strip()
        assert "\n" not in lines[name] and json.loads((to / "freezetune.json").read_text())["load"] in lines[name]
        assert "PeftModel.from_pretrained(AutoModelForSequenceClassification.from_pretrained(" in lines[name]
    assert f"from_pretrained({str(tmp_path / 'm' / 'base')!r}, trust_remote_code=True)" in lines["m"]
    assert f"id2label={ID2LABEL!r}" in lines["n"] and "trust_remote_code" not in lines["n"]


# ---------------------------------------------------------------------- causal LM
def tiny_tokenizer(folder: Path) -> None:
    """A word-level tokenizer of 43 tokens: fits the tiny models' 50-row embeddings."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<unk>", "<s>", "</s>"] + [f"w{i}" for i in range(40)]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    fast.save_pretrained(str(folder))


@pytest.fixture(scope="module")
def decoders(tmp_path_factory):
    """Tiny decoders saved with a tokenizer: Llama with tied and with untied embeddings, GPT-2 (tied, Conv1D)."""
    folders = {}
    for name, build in (("llama", tiny_llama), ("llama-untied", lambda: tiny_llama(tie=False)), ("gpt2", tiny_gpt2)):
        folder = tmp_path_factory.mktemp(name)
        build().save_pretrained(str(folder))
        tiny_tokenizer(folder)
        folders[name] = str(folder)
    return folders


def prompts():
    """Left-padded prompts of different lengths, as generation wants them."""
    ids = torch.tensor([[0, 0, 7, 8, 9, 10], [11, 12, 13, 14, 15, 16], [0, 0, 0, 20, 21, 22]])
    return ids, (ids != 0).long()


def greedy(model, **extra):
    ids, mask = prompts()
    out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=8, do_sample=False,
                         eos_token_id=2, pad_token_id=0, **extra)
    return out[:, ids.size(1):]


def ours_greedy(folder):
    ids, mask = prompts()
    return freezetune_model(folder).generate(ids, mask, max_new_tokens=8, eos_token_id=2, pad_token_id=0)


def lm_inputs():
    ids, mask = prompts()
    return {"input_ids": ids.flip(1), "attention_mask": mask.flip(1)}  # right padding: our training layout


def assert_same_lm(theirs, folder):
    ours = freezetune_model(folder)
    inputs = lm_inputs()
    keep = inputs["attention_mask"].bool()
    assert torch.allclose(logits(theirs, inputs)[keep], logits(ours, inputs)[keep], atol=1e-5, rtol=0)
    assert torch.equal(greedy(theirs), ours_greedy(folder))


LORA_EMB = Plan(lora=LoraSpec(r=4, alpha=8, blocks=(1,)), embeddings=True, spec="lora:r=4:blocks=1:embeddings=true")


@pytest.mark.parametrize("name", ["llama", "llama-untied", "gpt2"])
def test_causal_lm_peft_adapter_generates_what_freezetune_does(decoders, name, tmp_path):
    from peft import AutoPeftModelForCausalLM, PeftModel
    from transformers import AutoModelForCausalLM

    ckpt = tmp_path / "ckpt"
    make_checkpoint(ckpt, decoders[name], LORA_EMB, task=CAUSAL_LM)
    to = export_peft(ckpt, tmp_path / "adapter")
    config = json.loads((to / "adapter_config.json").read_text())
    assert config["task_type"] == "CAUSAL_LM" and config["base_model_name_or_path"] == decoders[name]
    embed = "transformer.wte" if name == "gpt2" else "model.embed_tokens"
    assert embed in config["modules_to_save"]
    assert config["ensure_weight_tying"] == (name != "llama-untied")
    with NoMissingKeys():
        theirs = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(decoders[name]), str(to)).eval()
    assert_same_lm(theirs, ckpt)
    if name != "llama-untied":  # the trained embedding is still the output projection too
        assert theirs.get_output_embeddings().weight.data_ptr() == theirs.get_input_embeddings().weight.data_ptr()
    with NoMissingKeys():
        auto = AutoPeftModelForCausalLM.from_pretrained(str(to), dtype=torch.float32).eval()
    assert_same_lm(auto, ckpt)
    assert_same_lm(card_code(to)["model"], ckpt)


@pytest.mark.parametrize("plan", [LORA_EMB, Plan(blocks=(3,), embeddings=True, spec="top_k:1:embeddings=true")],
                         ids=["lora", "top_k"])
def test_causal_lm_merged_folder_keeps_tied_embeddings(decoders, plan, tmp_path):
    from transformers import AutoModelForCausalLM

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("task: causal-lm\n")
    (run / "metrics.json").write_text(json.dumps({"reported_split": "validation", "validation": {
        "loss": 2.5, "perplexity": 12.18, "token_accuracy": 0.4, "exact_match": 0.1}}))
    make_checkpoint(run / "checkpoint", decoders["llama"], plan, task=CAUSAL_LM, config={"data": "/d/pairs.jsonl"})
    to = export_hf(run, tmp_path / "hf")
    assert json.loads((to / "config.json").read_text())["tie_word_embeddings"] is True
    assert not any("lora" in k for k in load_file(str(to / "model.safetensors")))
    theirs = AutoModelForCausalLM.from_pretrained(str(to)).eval()
    assert theirs.lm_head.weight.data_ptr() == theirs.model.embed_tokens.weight.data_ptr()
    base = AutoModelForCausalLM.from_pretrained(decoders["llama"])
    assert not torch.allclose(theirs.model.embed_tokens.weight, base.model.embed_tokens.weight)  # it trained
    assert_same_lm(theirs, run / "checkpoint")
    assert_same_lm(card_code(to)["model"], run / "checkpoint")
    card = (to / "README.md").read_text()
    assert "causal language modelling" in card and "`pairs.jsonl`" in card and "embeddings" in card
    assert "validation split: loss 2.5, perplexity 12.18, token accuracy 0.4, exact match 0.1" in card
    assert "optimistic" in card and "AutoModelForCausalLM.from_pretrained" in card
    assert (to / "tokenizer.json").is_file() and (to / "freezetune.json").is_file()
