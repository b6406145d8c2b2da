"""``freezetune plan --format``: a resolved plan as the files another tool reads.

Every format returns ``{file name: text}``. The YAML formats open with a comment block saying
what trains and the command that made them (keys to merge into the tool's own config); the JSON
formats get the same words in a README.md beside them, with the lines that load them.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import yaml

from freezetune.integrations.export_axolotl import axolotl_keys
from freezetune.integrations.export_llama_factory import llama_factory_keys
from freezetune.integrations.export_peft_config import adapter_config_json
from freezetune.integrations.plan_text import header_lines
from freezetune.integrations.target import Target

PLAN_FORMAT_VERSION = 1


def _header(target: Target, tool: str, command: str) -> list[str]:
    trained, total = target.counts()
    return [*header_lines(target.plan, target.layers, tool=tool, model=target.model, trained=trained, total=total,
                          command=command), *target.notes]


def _yaml(target: Target, tool: str, keys: dict, command: str, file_name: str) -> dict[str, str]:
    comment = [*_header(target, tool, command), f"merge these keys into your {tool} training config"]
    body = yaml.safe_dump(keys, sort_keys=False, default_flow_style=False, width=1000)
    return {file_name: "".join(f"# {line}\n" for line in comment) + body}


def axolotl(target: Target, command: str) -> dict[str, str]:
    return _yaml(target, "axolotl", axolotl_keys(target), command, "axolotl.yaml")


def llama_factory(target: Target, command: str) -> dict[str, str]:
    return _yaml(target, "LLaMA-Factory", llama_factory_keys(target), command, "llama_factory.yaml")


def peft(target: Target, command: str) -> dict[str, str]:
    config = adapter_config_json(target)  # refuses a plan with no LoRA before any file is named
    auto = "AutoModelForCausalLM" if target.causal_lm else "AutoModelForSequenceClassification"
    usage = ["```python", f"from transformers import {auto}", "from peft import LoraConfig, get_peft_model", "",
             'config = LoraConfig.from_pretrained("THIS_FOLDER")',
             f'model = get_peft_model({auto}.from_pretrained("{target.model}"), config)',
             "model.print_trainable_parameters()", "```"]
    return {"adapter_config.json": config, "README.md": _readme(target, "PEFT", command, usage)}


def plan_json(target: Target, command: str) -> dict[str, str]:
    trained, total = target.counts()
    data = {"format": "freezetune-plan", "version": PLAN_FORMAT_VERSION, "spec": target.plan.spec,
            "model": target.model, "task": "causal-lm" if target.causal_lm else "classification",
            "trainable_parameters": trained, "total_parameters": total, "trains": target.trained,
            "plan": target.plan.to_dict(), "command": command}
    usage = ["```python", "import json", "from freezetune import Plan, apply", "",
             'saved = json.load(open("THIS_FOLDER/plan.json"))',
             'apply(model, Plan.from_dict(saved["plan"]))  # or: for name in saved["trains"]: ...', "```",
             "", "`trains` lists the parameter names that train, as the model's `named_parameters()` spells them."]
    return {"plan.json": json.dumps(data, indent=2) + "\n", "README.md": _readme(target, "JSON", command, usage)}


def _readme(target: Target, tool: str, command: str, usage: list[str]) -> str:
    title, *facts = _header(target, tool, command)
    return "\n".join([f"# {title}", "", *(f"- {line}" for line in facts), "", *usage, ""])


FORMATS: dict[str, Callable[[Target, str], dict[str, str]]] = {
    "json": plan_json, "axolotl": axolotl, "llama-factory": llama_factory, "peft": peft,
}
# What each format writes (known before anything loads: nothing the user has is overwritten).
FILES = {"json": ("plan.json", "README.md"), "axolotl": ("axolotl.yaml",), "llama-factory": ("llama_factory.yaml",),
         "peft": ("adapter_config.json", "README.md")}
# The tools that train causal LMs only: a classifier's plan goes to json or peft.
CAUSAL_ONLY = ("axolotl", "llama-factory")
