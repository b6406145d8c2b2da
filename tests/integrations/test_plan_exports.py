"""Plan exports, checked with each tool's own rules over real tiny models' parameter names.

axolotl and LLaMA-Factory do not install in the locked environment (their dependencies pin torch
and CUDA builds), so their matching rules come transcribed from their sources (tests/tool_rules.py).
PEFT is installed: its own ``LoraConfig.from_pretrained`` and ``get_peft_model`` are used.
"""

from __future__ import annotations

import json

import pytest
import yaml

from conftest import tiny_bert, tiny_decoder
from freezetune.core.errors import FreezetuneError
from freezetune.core.layout import LayerMap
from freezetune.core.plan import Plan
from freezetune.integrations.export_axolotl import axolotl_keys
from freezetune.integrations.export_llama_factory import llama_factory_keys
from freezetune.integrations.plan_exports import FORMATS
from freezetune.integrations.target import Target
from freezetune.strategies.registry import resolve
from tool_rules import axolotl_trains, llama_factory_trains

COMMAND = "freezetune plan --strategy X --format Y"


def names(model) -> list[str]:
    return [n for n, _ in model.named_parameters()]


def target(model, spec: str, causal_lm: bool = True) -> Target:
    layers = LayerMap.from_model(model)
    return Target(resolve(spec, layers), layers, "tiny", causal_lm)


# LLaMA-Factory's FinetuningArguments fields these exports write (src/llamafactory/hparams/finetuning_args.py)
LLAMA_FACTORY_KEYS = {"finetuning_type", "freeze_trainable_layers", "freeze_trainable_modules", "freeze_extra_modules",
                      "lora_rank", "lora_alpha", "lora_dropout", "lora_target", "additional_target"}
# axolotl config keys (src/axolotl/utils/schemas/): freezing and PEFT
AXOLOTL_KEYS = {"unfrozen_parameters", "adapter", "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules",
                "peft_layers_to_transform", "peft_layers_pattern", "lora_modules_to_save", "lora_fan_in_fan_out"}


@pytest.mark.parametrize("spec", ["top_k:2", "layers:0,2", "attention:1-2", "bias", "lower_half:embeddings=true",
                                  "norm:2:head=false", "full"])
@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_axolotl_patterns_train_exactly_the_plan_under_axolotls_matching(spec, arch):
    model = tiny_decoder(arch)
    plan_target = target(model, spec)
    keys = axolotl_keys(plan_target)
    assert set(keys) == {"unfrozen_parameters"}
    assert axolotl_trains(names(model), keys["unfrozen_parameters"]) == set(plan_target.trained)


def test_axolotl_block_patterns_do_not_reach_blocks_whose_number_starts_the_same():
    from transformers import LlamaConfig, LlamaForCausalLM

    config = tiny_decoder("llama").config.to_dict() | {"num_hidden_layers": 16}  # "1" begins "10"..."15"
    model = LlamaForCausalLM(LlamaConfig(**config))
    plan_target = target(model, "layers:1")
    patterns = axolotl_keys(plan_target)["unfrozen_parameters"]
    assert patterns == ["^model.layers.1.", "^model.norm.weight$"]
    assert {n.split(".")[2] for n in axolotl_trains(names(model), patterns) if ".layers." in n} == {"1"}


def test_axolotl_file_opens_with_what_trains_and_the_command():
    files = FORMATS["axolotl"](target(tiny_decoder(), "top_k:2"), COMMAND)
    text = files["axolotl.yaml"]
    comment = [line for line in text.splitlines() if line.startswith("#")]
    assert comment[0] == "# freezetune plan for axolotl: top_k:2 on tiny"
    assert comment[1] == "# trains: blocks 2-3, head; 4,688 of 10,000 parameters train in full (46.88%)"
    assert comment[2] == "# frozen: embeddings, blocks 0-1 (blocks are numbered from 0 at the input)"
    assert f"# made with: {COMMAND}" in comment
    assert yaml.safe_load(text) == {"unfrozen_parameters": ["^model.layers.2.", "^model.layers.3.",
                                                            "^model.norm.weight$"]}


def test_axolotl_lora_plan_uses_its_peft_keys():
    keys = axolotl_keys(target(tiny_decoder(), "lora:r=4:blocks=1,2"))
    assert keys == {"adapter": "lora", "lora_r": 4, "lora_alpha": 16, "lora_dropout": 0.1,
                    "lora_target_modules": ["self_attn.q_proj", "self_attn.v_proj"],
                    "peft_layers_to_transform": [1, 2], "lora_modules_to_save": ["model.norm"],
                    "peft_layers_pattern": ["layers"]}
    assert set(keys) <= AXOLOTL_KEYS


@pytest.mark.parametrize("spec,keys", [
    ("top_k:2:head=false", {"freeze_trainable_layers": 2, "freeze_trainable_modules": "all"}),
    ("layers:0-1:head=false", {"freeze_trainable_layers": -2, "freeze_trainable_modules": "all"}),
    ("attention:2-3:head=false", {"freeze_trainable_layers": 2, "freeze_trainable_modules": "self_attn"}),
    ("ffn:3:head=false:embeddings=true", {"freeze_trainable_layers": 1, "freeze_trainable_modules": "mlp",
                                          "freeze_extra_modules": "embed_tokens"}),
])
def test_llama_factory_keys_train_exactly_the_plan_under_its_rules(spec, keys):
    model = tiny_decoder("llama")
    plan_target = target(model, spec)
    written = llama_factory_keys(plan_target)
    assert written == {"finetuning_type": "freeze", **keys}
    assert set(written) <= LLAMA_FACTORY_KEYS
    assert llama_factory_trains(model, written) == set(plan_target.trained)


@pytest.mark.parametrize("spec,why,nearest", [
    ("layers:0,2:head=false", "it trains the first or the last n blocks only", "layers:0-2:head=false"),
    ("layers:1-2:head=false", "it trains the first or the last n blocks only", "layers:1-3:head=false"),
    ("top_k:2", "its keys match names as substrings, so model.layers.0.input_layernorm.weight would train too",
     "layers:2-3:head=false"),
    ("lora:r=4:blocks=1", "its LoRA adapts every block or none", "lora:r=4"),
    ("lower_half:lr_decay=2:head=false", "its units train at different learning rates; the tool has one",
     "layers:2-3:head=false"),
])
def test_llama_factory_refuses_what_it_cannot_express_naming_the_nearest_plan(spec, why, nearest):
    with pytest.raises(FreezetuneError) as error:
        llama_factory_keys(target(tiny_decoder("llama"), spec))
    assert str(error.value) == f"LLaMA-Factory cannot express this plan ({why}); the nearest plan it can: " \
                               f"--strategy {nearest}"


def test_the_nearest_llama_factory_plan_is_one_it_expresses_exactly():
    model = tiny_decoder("llama")
    nearest = target(model, "layers:1-2:head=false")
    with pytest.raises(FreezetuneError):
        llama_factory_keys(nearest)
    widened = target(model, "layers:1-3:head=false")
    assert llama_factory_trains(model, llama_factory_keys(widened)) == set(widened.trained)


def test_llama_factory_lora_on_every_block():
    model = tiny_decoder("llama")
    keys = llama_factory_keys(target(model, "lora:r=4:head=false"))
    assert keys == {"finetuning_type": "lora", "lora_rank": 4, "lora_alpha": 16, "lora_dropout": 0.1,
                    "lora_target": "self_attn.q_proj,self_attn.v_proj"}


def peft_trains(model, config) -> tuple[set[str], set[str]]:
    """(modules PEFT put adapters on, base tensors it trains in full), in the base model's names."""
    from peft import get_peft_model

    wrapped = get_peft_model(model, config)
    adapted, full = set(), set()
    for name, param in wrapped.named_parameters():
        if not param.requires_grad:
            continue
        name = name.removeprefix("base_model.model.")
        if ".lora_" in name:
            adapted.add(name.split(".lora_")[0])
        else:
            full.add(name.replace(".modules_to_save.default.", "."))
    return adapted, full


@pytest.mark.parametrize("arch,spec,adapted", [
    ("llama", "lora:r=4:blocks=1,2", {f"model.layers.{i}.self_attn.{p}_proj" for i in (1, 2) for p in "qv"}),
    ("llama", "lora:r=4:targets=q_proj+o_proj", {f"model.layers.{i}.self_attn.{p}_proj" for i in range(4)
                                                 for p in "qo"}),
    ("gpt2", "lora:r=2:blocks=2:embeddings=true", {"transformer.h.2.attn.c_attn"}),
])
def test_peft_loads_the_config_and_trains_exactly_the_planned_tensors(tmp_path, arch, spec, adapted):
    from peft import LoraConfig

    model = tiny_decoder(arch)
    plan_target = target(model, spec)
    files = FORMATS["peft"](plan_target, COMMAND)
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    config = LoraConfig.from_pretrained(str(tmp_path))
    got_adapted, got_full = peft_trains(tiny_decoder(arch), config)
    assert got_adapted == adapted
    assert got_full == set(plan_target.trained)
    assert "LoraConfig.from_pretrained" in files["README.md"]
    assert files["README.md"].startswith(f"# freezetune plan for PEFT: {spec} on tiny")


def test_peft_config_for_a_classifier_saves_its_head():
    from peft import LoraConfig
    from transformers import BertForSequenceClassification

    model = BertForSequenceClassification(tiny_bert().config)
    plan_target = target(model, "lora:r=4:blocks=2,3", causal_lm=False)
    config = LoraConfig(**json.loads(FORMATS["peft"](plan_target, COMMAND)["adapter_config.json"]))
    assert config.task_type == "SEQ_CLS"
    adapted, full = peft_trains(BertForSequenceClassification(tiny_bert().config), config)
    assert adapted == {f"bert.encoder.layer.{i}.attention.self.{p}" for i in (2, 3) for p in ("query", "value")}
    assert full == set(plan_target.trained) and any(n.startswith("classifier.") for n in full)


def test_peft_refuses_a_freezing_plan_naming_the_formats_that_express_it():
    with pytest.raises(FreezetuneError) as error:
        FORMATS["peft"](target(tiny_decoder(), "top_k:2"), COMMAND)
    assert str(error.value) == ("PEFT's LoraConfig cannot express this plan (it trains no LoRA adapters: it only "
                                "freezes); write it with --format json, axolotl or llama-factory (or freezetune.apply "
                                "in your own loop)")


def test_json_lists_the_names_that_train_and_the_plan_applies_again():
    import freezetune

    model = tiny_decoder()
    plan_target = target(model, "layers:0,2")
    files = FORMATS["json"](plan_target, COMMAND)
    saved = json.loads(files["plan.json"])
    assert saved["trains"] == plan_target.trained and saved["trainable_parameters"] == 2 * 2336 + 16
    assert saved["command"] == COMMAND and "# freezetune plan for JSON: layers:0,2 on tiny" in files["README.md"]
    fresh = tiny_decoder()
    freezetune.apply(fresh, Plan.from_dict(saved["plan"]))
    assert [n for n, p in fresh.named_parameters() if p.requires_grad] == saved["trains"]
