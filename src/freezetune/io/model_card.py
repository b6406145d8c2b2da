"""The README.md of an exported folder, and the one line of Python that loads it.

An export is only useful if a stranger can load it and knows what it is, so every exported
folder carries a model card: the base model, the plan and what it trained, the data, the
reported numbers of the run (when the checkpoint sits in a run folder) and the exact loading
code. The same loading line goes into ``freezetune.json`` (key ``load``) for the CLI to print.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from freezetune.core.config import CAUSAL_LM
from freezetune.core.layout import EMBEDDINGS, HEAD
from freezetune.io.rundir import is_run, read_metrics

_MAIN_METRICS = {  # per task: the numbers a reader looks for first, in this order
    "classification": ("accuracy", "macro_f1", "mcc"),
    CAUSAL_LM: ("loss", "perplexity", "token_accuracy", "exact_match"),
}


# ---------------------------------------------------------------------- loading code
def load_code(info: dict[str, Any], folder: str) -> tuple[list[str], str]:
    """(import lines, one expression) that load the export in ``folder`` the standard way.

    ``info`` is the export's ``freezetune.json``: ``format`` (hf | peft), ``task``,
    ``trust_remote_code``, and for peft ``peft_base`` (what to load the base from),
    ``native`` and ``label_names``.
    """
    causal = info["task"] == CAUSAL_LM
    auto = "AutoModelForCausalLM" if causal else "AutoModelForSequenceClassification"
    remote = ", trust_remote_code=True" if info.get("trust_remote_code") else ""
    if info["format"] == "hf":
        return [f"from transformers import {auto}"], f"{auto}.from_pretrained({folder!r}{remote})"
    imports = ["from peft import PeftModel", f"from transformers import {auto}"]
    base = info["peft_base"]
    if info.get("base_in_folder"):  # base/ inside the export, saved in float32 with freezetune's pooling code
        base_args = f"{str(Path(folder) / base)!r}{remote}"
    else:
        # The original base: float32 as freezetune computes (transformers would keep the file's dtype).
        imports.insert(0, "import torch")
        base_args = f"{base!r}"
        if not causal:  # a native class builds its head from the labels; the adapter holds its weights
            id2label = dict(enumerate(info["label_names"]))
            base_args += f", id2label={id2label!r}"
        if info.get("gguf_file"):
            base_args += f", gguf_file={info['gguf_file']!r}"
        base_args += ", dtype=torch.float32"
    return imports, f"PeftModel.from_pretrained({auto}.from_pretrained({base_args}), {folder!r})"


def auto_peft_code(info: dict[str, Any], folder: str) -> str | None:
    """The one-call ``AutoPeftModel...`` alternative (it reads the base from adapter_config.json).

    None for a GGUF base: only the two-step code above is known to pass ``gguf_file`` through.
    """
    if info.get("gguf_file"):
        return None
    if info["task"] == CAUSAL_LM:
        return f"AutoPeftModelForCausalLM.from_pretrained({folder!r}, dtype=torch.float32)"
    if info.get("base_in_folder"):
        return f"AutoPeftModelForSequenceClassification.from_pretrained({folder!r}, trust_remote_code=True)"
    id2label = dict(enumerate(info["label_names"]))
    return (f"AutoPeftModelForSequenceClassification.from_pretrained({folder!r}, id2label={id2label!r}, "
            "dtype=torch.float32)")


# ---------------------------------------------------------------------- what trained
def _blocks_text(blocks: list[int]) -> str:
    return ("block " if len(blocks) == 1 else "blocks ") + ", ".join(map(str, blocks))


def trained_summary(meta: dict[str, Any], unit_for, lora_targets: list[str]) -> str:
    """Which units trained, in words: ``unit_for`` places a checkpoint tensor name in its unit."""
    units = {unit_for(n) for n in meta["tensors"] if "lora_" not in n}
    lora_blocks = sorted({int(u.split(".")[1]) for u in (unit_for(n) for n in meta["tensors"] if "lora_" in n)
                          if u.startswith("block.")})
    parts = []
    if EMBEDDINGS in units:
        parts.append("embeddings")
    full = sorted(int(u.split(".")[1]) for u in units if u.startswith("block."))
    if full:
        parts.append(_blocks_text(full) + " (weights)")
    if lora_blocks:
        leaves = sorted({t.rsplit(".", 1)[-1] for t in lora_targets})
        r = meta["plan"]["lora"]["r"]
        parts.append(f"LoRA r={r} on {_blocks_text(lora_blocks)} ({', '.join(leaves)})")
    if HEAD in units:
        parts.append("head")
    share = meta["trained_params"] / max(meta["total_params"], 1)
    what = "; ".join(parts) or "nothing"
    return f"{what} — {meta['trained_params']:,} of {meta['total_params']:,} parameters ({100 * share:.2f} %)"


# ---------------------------------------------------------------------- data and metrics
def _data_text(config: dict[str, Any]) -> str:
    def name(key: str) -> str | None:
        value = config.get(key)
        return f"`{Path(value).name}`" if value else None

    train = name("data") or "not recorded"
    validation = name("eval_data") or "a split of the training data"
    test = name("test_data") or "none"
    return f"train {train}; validation {validation}; test {test}"


def run_metrics(checkpoint_folder: Path) -> dict[str, Any] | None:
    """The run's ``metrics.json`` when the checkpoint sits in a run folder, else None."""
    run = checkpoint_folder.parent
    # a damaged metrics file must not stop an export: the card says it has none
    return read_metrics(run) if is_run(run) else None


def metrics_text(metrics: dict[str, Any] | None, task: str) -> str:
    if not metrics:
        return "not recorded (the checkpoint is not inside a run folder with metrics.json)"
    split = metrics.get("reported_split") or "validation"
    numbers = metrics.get(split) or {}
    keys = [k for k in _MAIN_METRICS.get(task, ()) if isinstance(numbers.get(k), (int, float))]
    shown = ", ".join(f"{k.replace('_', ' ')} {numbers[k]:.4g}" for k in keys) or "none"
    rows = f" on {numbers['n']} rows" if isinstance(numbers.get("n"), int) else ""
    text = f"{split} split{rows}: {shown}"
    if split != "test":
        text += " (validation numbers, used for model selection: optimistic)"
    return text


# ---------------------------------------------------------------------- the card
def model_card(info: dict[str, Any], meta: dict[str, Any], *, folder: str, trained: str,
               metrics: dict[str, Any] | None) -> str:
    causal = info["task"] == CAUSAL_LM
    peft = info["format"] == "peft"
    base = meta["base_model"]
    front = ["---", f"library_name: {'peft' if peft else 'transformers'}"]
    if not Path(base).is_absolute():  # a Hub name; a local path means nothing on the Hub
        front.append(f"base_model: {base}")
    front += [f"pipeline_tag: {'text-generation' if causal else 'text-classification'}",
              "tags:", "- freezetune", *(["- lora"] if peft else []), "---", ""]
    if causal:
        task = "causal language modelling"
    else:
        labels = ", ".join(meta["label_names"])
        task = f"classification into {len(meta['label_names'])} labels ({labels}); {meta['pooling']} pooling"
    what = ("a PEFT LoRA adapter (`task_type` " + ("CAUSAL_LM" if causal else "SEQ_CLS") + "); everything else "
            "that trained travels in it as `modules_to_save`") if peft else "a Hugging Face model folder (LoRA merged)"
    rows = [
        ("base model", f"`{base}`" + (f" (`{meta['gguf_file']}`)" if meta.get("gguf_file") else "")
         + f", weights fingerprint `{meta['base_fingerprint']}`"),
        ("task", task),
        ("plan", f"`{meta['plan'].get('spec', 'custom')}`"),
        ("trained", trained),
        ("data", _data_text(meta.get("config") or {})),
        ("metrics", metrics_text(metrics, info["task"])),
    ]
    imports, expression = load_code(info, folder)
    # The folder's config.json names custom code, and AutoTokenizer reads it: without the flag it asks
    # on stdin. An adapter folder has no config.json, so its tokenizer loads plainly.
    tokenizer_flag = ", trust_remote_code=True" if info.get("trust_remote_code") and not peft else ""
    short = "/".join(Path(base).parts[-2:]) if Path(base).is_absolute() else base  # a Hub name as it is
    body = [f"# `{short}`, fine-tuned with freezetune", "", f"This folder is {what}.", "",
            "| | |", "| --- | --- |", *(f"| {k} | {v} |" for k, v in rows), "", "## Load", "",
            "```python", *imports, "from transformers import AutoTokenizer", "",
            f"model = {expression}.eval()", f"tokenizer = AutoTokenizer.from_pretrained({folder!r}{tokenizer_flag})",
            "```", ""]
    if peft and auto_peft_code(info, folder):
        alt = "AutoPeftModelForCausalLM" if causal else "AutoPeftModelForSequenceClassification"
        torch_import = "" if info.get("base_in_folder") and not causal else "import torch\n"
        body += ["Or in one call (it reads the base model's location from `adapter_config.json`):", "",
                 "```python", f"{torch_import}from peft import {alt}", "",
                 f"model = {auto_peft_code(info, folder)}.eval()", "```", ""]
    if info.get("base_in_folder"):
        body += ["No stock transformers class pools the way this model does, so `base/` holds the base "
                 "model with freezetune's pooling code (`modeling_freezetune.py`, hence "
                 "`trust_remote_code=True`) and an untrained head; the adapter carries the trained one.", ""]
    if causal:
        chat = (meta.get("config") or {}).get("chat_template", "auto") != "none"
        encode = ("tokenizer.apply_chat_template([{'role': 'user', 'content': prompt}], add_generation_prompt=True, "
                  "return_tensors='pt', return_dict=True)" if chat else "tokenizer(prompt, return_tensors='pt')")
        body += ["Generate greedily as `freezetune predict` does (the tokenizer pads on the left for batches"
                 + (", and the run rendered prompts with the chat template when the tokenizer has one" if chat else "")
                 + f"): `model.generate(**{encode}, do_sample=False, max_new_tokens=32)`.", ""]
    else:
        body += ["Predict: `model(**tokenizer(texts, return_tensors='pt', padding=True, truncation=True))"
                 ".logits.argmax(-1)`, names in `model.config.id2label`.", ""]
    body += ["`freezetune.json` records the checkpoint this was exported from.", ""]
    return "\n".join(front + body)


__all__ = ["auto_peft_code", "load_code", "metrics_text", "model_card", "run_metrics", "trained_summary"]
