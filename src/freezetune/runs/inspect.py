"""``freezetune inspect``: a model's units and sizes, and optionally what a plan would train."""

from __future__ import annotations

from freezetune.core.causal_lm import CausalLM, load_causal_lm
from freezetune.core.errors import FreezetuneError
from freezetune.core.layout import LayerMap
from freezetune.core.model import default_pooling, is_decoder, load_classifier, load_config
from freezetune.io import defaults
from freezetune.strategies.registry import needs_context, resolve


def load_for_inspection(model_path: str, *, gguf_file: str | None = None, pooling: str = "auto",
                        trust_remote_code: bool = False):
    """Encoders get freezetune's classifier head (2 labels); decoders keep their LM head, wrapped
    as the causal-LM task trains them (unit names start with ``backbone.``)."""
    remote = {"gguf_file": gguf_file, "trust_remote_code": trust_remote_code}
    if is_decoder(load_config(model_path, **remote)):
        return load_causal_lm(model_path, **remote)
    return load_classifier(model_path, 2, pooling=pooling, **remote)


def inspect_model(
    model_path: str | None, *, gguf_file: str | None = None, pooling: str = "auto", strategy: str | None = None,
    trust_remote_code: bool = False,
) -> str:
    if strategy and needs_context(strategy):  # checked before the model loads: the error is the only output
        raise FreezetuneError(
            f"{strategy} chooses its plan from scores on your data; `freezetune score --data FILE` shows them, "
            "and a run's selection.txt says what it chose"
        )
    model_path = model_path or defaults.default_model_path()
    model = load_for_inspection(model_path, gguf_file=gguf_file, pooling=pooling, trust_remote_code=trust_remote_code)
    layers = LayerMap.from_model(model)
    lines = [f"model: {model_path}"]
    if isinstance(model, CausalLM):
        # The LM head is shown; a classifier on this decoder would pool as said here.
        classifier_pooling = pooling if pooling != "auto" else default_pooling(model_path, model.config)
        lines += [f"class: {type(model.backbone).__name__} (LM head shown)",
                  f"pooling: {classifier_pooling} (for a classifier head on it)"]
    else:
        lines += [f"class: {type(model).__name__}", f"pooling: {model.pooling} (head shown for 2 labels)"]
    lines.append(f"blocks: {layers.num_blocks} (numbered 0..{layers.num_blocks - 1} from the input)")
    lines += ["", layers.describe()]
    if strategy:
        plan = resolve(strategy, layers)
        lines += ["", plan.describe(layers), f"frozen prefix depth: {plan.frozen_prefix_depth(layers.num_blocks)}"]
    return "\n".join(lines)
