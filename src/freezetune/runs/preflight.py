"""What a run can refuse from the model's config alone, before any weights load.

A block out of range, a budget smaller than a block, a model folder without config.json, a
model that needs --trust-remote-code, a retention floor with --retention none: each would
otherwise surface only after the data was tokenized and the weights loaded, behind their log
lines and progress bars. Here the config
is read (config.json, or a GGUF file's header), the model is built empty on the meta device
(no memory, no weights) and the strategy is checked against its layout. A GGUF file's config
is read with its tokenizer, which takes as long as loading it, so there only the folder and the
file are checked early; the strategy is checked once the model loads.
"""

from __future__ import annotations

import logging

import torch

from freezetune.core.causal_lm import CausalLM
from freezetune.core.config import CAUSAL_LM, ModelConfig
from freezetune.core.errors import FreezetuneError
from freezetune.core.layout import LayerMap
from freezetune.core.model import SequenceClassifier, check_model_folder, default_pooling, load_config
from freezetune.core.plan import Plan
from freezetune.core.spec import parse_spec
from freezetune.runs.loading import check_eval_sets, check_metric
from freezetune.runs.spec import RunSpec
from freezetune.runs.tensorboard_log import check_report_to
from freezetune.strategies.registry import check_fits, check_spec

log = logging.getLogger("freezetune")


def empty_layout(model: ModelConfig, task: str) -> LayerMap | None:
    """The layout of ``model`` built on the meta device; None when this architecture cannot be built so
    (the real load then reports what is wrong). A bad folder or config raises FreezetuneError."""
    from transformers import AutoModel, AutoModelForCausalLM

    if model.gguf_file:  # reading a GGUF file's config takes as long as its tokenizer: checked when it loads
        check_model_folder(model.model, model.gguf_file)
        return None
    config = load_config(model.model, trust_remote_code=model.trust_remote_code)
    try:
        with torch.device("meta"):
            if task == CAUSAL_LM:
                lm = AutoModelForCausalLM.from_config(config, trust_remote_code=model.trust_remote_code)
                built = CausalLM(lm, check_packing=False)
            else:
                pooling = model.pooling if model.pooling != "auto" else default_pooling(model.model, config)
                backbone = AutoModel.from_config(config, trust_remote_code=model.trust_remote_code)
                built = SequenceClassifier(backbone, 2, pooling)
        return LayerMap.from_model(built)
    except FreezetuneError:
        raise
    except Exception as error:  # noqa: BLE001 - only an early check: the real load reports the problem
        log.debug("no early check of the strategy against %s: %s", model.model, error)
        return None


def check_inputs(strategies: list[str | Plan], spec: RunSpec, output: str | None, *, layout: bool = True) -> None:
    """Everything a run or a sweep refuses before it reads data or loads weights: each strategy's grammar, the
    monitored metric, the extra evaluation sets, the training numbers, where it logs, and (with ``layout``)
    the model folder and each strategy against the model's layout."""
    for strategy in strategies:
        if isinstance(strategy, str):
            check_spec(strategy)
    check_metric(spec)
    check_eval_sets(spec)
    spec.train.validate()
    check_report_to(spec.train, output)
    if layout:
        check_before_loading(strategies, spec.model, spec.data.task, spec.data.retention)


def check_before_loading(strategies: list[str | Plan], model: ModelConfig, task: str, retention: str) -> None:
    """Refuse a bad --model, or a strategy its layout cannot take, before the data or the weights load."""
    for strategy in strategies:
        if isinstance(strategy, str) and retention == "none" and "retention" in parse_spec(strategy).options:
            raise FreezetuneError(f"--strategy {strategy} keeps a share of the pretrained skill, which --retention "
                                  "none does not measure: give --retention sts, ppl or cka")
    layers = empty_layout(model, task)
    if layers is None:
        return
    for strategy in strategies:
        check_fits(strategy, layers)
