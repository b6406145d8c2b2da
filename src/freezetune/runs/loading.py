"""What a run loads for its task: the data, the task object, the model, and the metric it monitors.

Classification and causal language modelling differ here and hardly anywhere else: the rest
of a run (run.py) and a sweep (sweep.py) work through the task object these functions return.
"""

from __future__ import annotations

import logging
import random
import time
from functools import partial

import numpy as np
import torch

from freezetune.core.causal_lm import load_causal_lm
from freezetune.core.config import CAUSAL_LM
from freezetune.core.errors import FreezetuneError
from freezetune.core.eval_sets import eval_set_specs, parse_label_map
from freezetune.core.logs import held_logs
from freezetune.core.model import load_classifier
from freezetune.io.data import ClassificationData, load_classification_data, load_eval_set
from freezetune.io.lm_data import LanguageModelingData, load_lm_data, load_lm_eval_set
from freezetune.measure.metrics import METRIC_DIRECTIONS
from freezetune.measure.units import format_duration
from freezetune.runs.spec import RunSpec
from freezetune.tasks.causal_lm import LM_DIRECTIONS, CausalLanguageModeling
from freezetune.tasks.classification import SequenceClassification

log = logging.getLogger("freezetune")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_data(spec: RunSpec, tokenizer) -> ClassificationData | LanguageModelingData:
    """The run's tokenized splits, then a log line with how many rows each has.

    Notes logged while reading (an encoding guessed, rows dropped) appear once every file and
    label proved good: a bad input's error line is the only output.
    """
    started = time.perf_counter()
    with held_logs(log):
        data = _read_data(spec, tokenizer)
    log.info("%s", data_line(data, time.perf_counter() - started))
    return data


def _read_data(spec: RunSpec, tokenizer) -> ClassificationData | LanguageModelingData:
    """The run's splits, with its evaluation sets (--extra-eval, --ood-set) read and tokenized the same way."""
    d = spec.data
    if d.task == CAUSAL_LM:
        data = load_lm_data(
            d.data, tokenizer=tokenizer, text_column=d.text_column, prompt_column=d.prompt_column,
            response_column=d.response_column, eval_path=d.eval_data, test_path=d.test_data,
            max_length=d.max_length, encoding=d.encoding, validation_fraction=d.validation_fraction,
            seed=spec.train.seed, max_train_rows=d.max_train_rows, max_eval_rows=d.max_eval_rows, header=d.header,
            chat_template=d.chat_template, pack=d.pack,
        )
        load_set = partial(load_lm_eval_set, columns=data.columns, chat_template=d.chat_template, pack=d.pack)
        return _with_eval_sets(data, spec, tokenizer, load_set)
    label_map = parse_label_map(d.label_map)
    data = load_classification_data(
        d.data,
        tokenizer=tokenizer,
        text_column=d.text_column,
        label_column=d.label_column,
        text_pair_column=d.text_pair_column,
        eval_path=d.eval_data,
        test_path=d.test_data,
        max_length=d.max_length,
        encoding=d.encoding,
        validation_fraction=d.validation_fraction,
        seed=spec.train.seed,
        max_train_rows=d.max_train_rows,
        max_eval_rows=d.max_eval_rows,
        header=d.header,
        min_class_count=d.min_class_count,
        label_map=label_map,
    )
    load_set = partial(load_eval_set, label_names=data.label_names, columns=data.text_columns,
                       label_column=str(d.label_column), label_map=label_map)
    return _with_eval_sets(data, spec, tokenizer, load_set)


def _with_eval_sets(data, spec: RunSpec, tokenizer, load_set):
    d = spec.data
    data.eval_sets = {s.name: load_set(s, tokenizer=tokenizer, max_length=d.max_length, encoding=d.encoding,
                                       seed=spec.train.seed, max_rows=d.max_eval_rows, header=d.header)
                      for s in eval_set_specs(d.extra_eval, d.ood_set)}
    return data


def check_eval_sets(spec: RunSpec) -> None:
    """--extra-eval / --ood-set name files that exist, under good names; --label-map is well formed."""
    eval_set_specs(spec.data.extra_eval, spec.data.ood_set)
    if parse_label_map(spec.data.label_map) and spec.data.task == CAUSAL_LM:
        raise FreezetuneError("--label-map renames classification labels; --task causal-lm has none: drop it")


def check_metric(spec: RunSpec) -> None:
    """The monitored metric must be one the task computes (checked before anything loads)."""
    directions = LM_DIRECTIONS if spec.data.task == CAUSAL_LM else METRIC_DIRECTIONS
    if spec.train.metric != "auto" and spec.train.metric not in directions:
        raise FreezetuneError(f"--metric {spec.train.metric} does not apply to {spec.data.task}: choose one of "
                              f"auto, {', '.join(directions)}")


def make_task(spec: RunSpec, data: ClassificationData | LanguageModelingData):
    if spec.data.task == CAUSAL_LM:
        return CausalLanguageModeling.for_data(prompt_response=len(data.columns) == 2)
    return SequenceClassification(data.label_names)


def load_model(spec: RunSpec, task):
    """The run's model: its head's initialisation depends on the seed alone."""
    seed_everything(spec.train.seed)
    m = spec.model
    if isinstance(task, CausalLanguageModeling):
        return load_causal_lm(m.model, gguf_file=m.gguf_file, trust_remote_code=m.trust_remote_code)
    return load_classifier(m.model, len(task.label_names), pooling=m.pooling, gguf_file=m.gguf_file,
                           trust_remote_code=m.trust_remote_code)


def data_line(data: ClassificationData | LanguageModelingData, seconds: float) -> str:
    """The rows a run trains, validates and tests on, and how long loading them took, for the log."""
    test = len(data.test) if data.test is not None else 0
    return (f"data: {len(data.train):,} training, {len(data.validation):,} validation, {test:,} test rows; "
            f"validation: {data.validation_source}; loaded in {format_duration(seconds)}")
