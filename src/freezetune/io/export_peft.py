"""A freezetune model as a PEFT model of the class a user loads, built with PEFT's own API.

The adapter must load with ``PeftModel.from_pretrained(<base in that class>, folder)`` and
predict what freezetune predicts. Three things make that so, and writing the file by hand got
each of them wrong once, so PEFT itself writes it here:

* module names are those of the class the user loads (``bert.encoder...`` under
  ``BertForSequenceClassification``, ``model.layers...`` under ``LlamaForCausalLM``), not
  freezetune's wrapper names (``backbone.encoder...``);
* ``task_type`` picks the PEFT class (``SEQ_CLS``, ``CAUSAL_LM``);
* whatever trained besides LoRA (the classifier, a pooler, whole blocks, the embeddings) goes in
  ``modules_to_save``, which PEFT stores in the adapter file and swaps in on load.

So: wrap the untrained base with ``get_peft_model`` and a ``LoraConfig`` naming the same
linears, copy our adapter and module tensors in, and let ``save_pretrained`` name them.
"""

from __future__ import annotations

import warnings
from typing import Callable

import torch
from torch import nn

from freezetune.core.errors import FreezetuneError
from freezetune.core.lora import ADAPTER, peft_lora_config
from freezetune.core.plan import LoraSpec

_SAVED = f".modules_to_save.{ADAPTER}."
_PEFT_ROOT = "base_model.model."


def _plain(name: str) -> str:
    """A parameter's name without PEFT's ``base_layer`` step: its name in the unadapted base."""
    return name.replace(".base_layer.", ".")


def _within(name: str, module: str) -> bool:
    return name == module or name.startswith(module + ".")


def modules_to_save(base: nn.Module, trained: set[str], targets: set[str], always: tuple[str, ...] = ()) -> list[str]:
    """The fewest whole modules of ``base`` that hold every trained (non-LoRA) tensor.

    ``trained`` are parameter names in ``base``'s naming. A module whose every parameter trained
    is taken whole (``bert.encoder.layer.3``); a tensor trained alone (a bias, a norm) brings its
    own module. ``always`` are taken whenever present (a classifier head: see ``export_peft``).
    PEFT cannot save a module that also carries a LoRA adapter, so that case is refused.
    """
    chosen = [name for name in always if _has_module(base, name)]
    for name, module in base.named_modules():  # parents come before their children
        if not name or any(_within(name, c) for c in chosen):
            continue
        own = [f"{name}.{n}" for n, _ in module.named_parameters()]
        if own and all(n in trained for n in own) and not any(_within(t, name) for t in targets):
            chosen.append(name)
    for name in sorted(trained):
        if any(_within(name, c) for c in chosen):
            continue
        parent = name.rpartition(".")[0]
        if not parent:  # modules_to_save matches names by suffix: an empty name would match every module
            raise FreezetuneError(f"{name} belongs to no module PEFT can save; use --format hf (LoRA merged)")
        clash = [t for t in targets if _within(t, parent) or _within(parent, t)]
        if clash:
            raise FreezetuneError(
                f"{name} trained inside {clash[0]}, which also carries a LoRA adapter: PEFT cannot save both "
                "for one layer; use --format hf (LoRA merged)"
            )
        chosen.append(parent)
    return chosen


def _has_module(model: nn.Module, name: str) -> bool:
    try:
        model.get_submodule(name)
    except AttributeError:
        return False
    return True


def _tied_embedding(base: nn.Module) -> tuple[str, str] | None:
    """(input embedding, output embedding) module names when they share one weight, else None."""
    get_in, get_out = getattr(base, "get_input_embeddings", None), getattr(base, "get_output_embeddings", None)
    if get_in is None or get_out is None:
        return None
    source, output = get_in(), get_out()
    if source is None or output is None or output.weight is not source.weight:
        return None
    names = {id(m): n for n, m in base.named_modules(remove_duplicate=False)}
    return names[id(source)], names[id(output)]


def build_peft_model(
    model: nn.Module,
    spec: LoraSpec,
    base: nn.Module,
    *,
    rename: Callable[[str], str],
    trained: list[str],
    task_type: str,
    always: tuple[str, ...] = (),
    base_model_name_or_path: str | None = None,
):
    """``base`` (untrained, in the class users load) wrapped by PEFT to compute what ``model`` does.

    ``model`` is freezetune's adapted model; ``rename`` maps its parameter and module names to
    ``base``'s; ``trained`` are the checkpoint's tensor names. ``base`` is modified in place.
    """
    from peft import get_peft_model

    targets = set(peft_lora_config(model, spec, rename=rename).target_modules)
    native_trained = {_plain(rename(n)) for n in trained if "lora_" not in n}
    unknown = sorted(native_trained - {n for n, _ in base.named_parameters()})
    if unknown:
        raise FreezetuneError(f"cannot place the trained tensor {unknown[0]} in {type(base).__name__}")
    saved = modules_to_save(base, native_trained, targets, always)
    tied = _tied_embedding(base)
    tie = tied is not None and bool({tied[0], tied[1]} & set(saved))
    if tie:
        # PEFT ties the two copies only when the output embedding is named among modules_to_save
        # (it recognises ``lm_head``, not every model's embedding name); then it keeps one copy.
        saved = [c for c in saved if c not in tied] + list(tied)
    config = peft_lora_config(
        model, spec, rename=rename, task_type=task_type, modules_to_save=saved or None,
        ensure_weight_tying=tie, inference_mode=True,
    )
    with warnings.catch_warnings():
        # PEFT asks transformers a deprecated question while wrapping; not the user's concern here.
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        peft_model = get_peft_model(base, config)
    listed = peft_model.peft_config[ADAPTER].modules_to_save
    if tie and tied[1] not in listed:
        # PEFT drops the output embedding from the list once it has tied it, and on load it ties only
        # when a name in the list ends in embed_tokens or lm_head: GPT-2's wte alone would load untied.
        listed.append(tied[1])
    if listed:  # SEQ_CLS appends its head names to ours: say each once in adapter_config.json
        listed[:] = list(dict.fromkeys(listed))
    # get_peft_model records the base's own name_or_path; the adapter must name where users load it from.
    peft_model.peft_config[ADAPTER].base_model_name_or_path = base_model_name_or_path
    _copy_tensors(model, peft_model, rename)
    return peft_model.eval()


def _copy_tensors(model: nn.Module, peft_model: nn.Module, rename: Callable[[str], str]) -> None:
    """Our LoRA tensors and the whole of every saved module (trained and untouched tensors) into PEFT's copies."""
    ours = {_plain(rename(n)): p for n, p in model.named_parameters()}
    filled = set()
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_" not in name and _SAVED not in name:
                continue
            native = name.removeprefix(_PEFT_ROOT).replace(_SAVED, ".")
            source = ours.get(native)
            if source is None:
                raise FreezetuneError(f"the PEFT model has {name}, which the model has no tensor for ({native})")
            if tuple(source.shape) != tuple(param.shape):
                raise FreezetuneError(f"{native} has shape {tuple(source.shape)} here but {tuple(param.shape)} in PEFT")
            param.copy_(source)
            filled.add(native)
    missing = sorted(n for n in ours if "lora_" in n and n not in filled)
    if missing:
        raise FreezetuneError(f"the adapter tensor {missing[0]} has no place in the PEFT model")


@torch.no_grad()
def check_same_outputs(model: nn.Module, peft_model: nn.Module, *, vocab_size: int, causal: bool) -> None:
    """Refuse to write an adapter whose model computes something else than ours (a probe batch)."""
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, max(vocab_size, 1), (2, 8), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0  # padding too: pooling and attention masks must agree
    ours = model(input_ids=ids, attention_mask=mask)
    theirs = peft_model(input_ids=ids, attention_mask=mask).logits
    if causal:  # padded positions predict nothing anyone reads
        keep = mask.bool()
        ours, theirs = ours[keep], theirs[keep]
    if ours.shape != theirs.shape or not torch.allclose(ours.float(), theirs.float(), atol=1e-4, rtol=1e-4):
        difference = (ours.float() - theirs.float()).abs().max().item() if ours.shape == theirs.shape else None
        raise FreezetuneError(
            "the PEFT model built for export does not reproduce this checkpoint's outputs "
            f"(largest difference {difference}); nothing was written. Use --format hf"
        )


__all__ = ["build_peft_model", "check_same_outputs", "modules_to_save"]
