"""``freezetune plan``'s work: resolve a spec for a model (scoring the data if it measures), write it for a tool.

A static spec reads only the model's layout, so only its config is read. A measuring spec
(``auto...``) scores freezetune's model on a seeded sample of the training data, as a run
would; the plan it chooses is then carried onto the class the other tool loads, whose names the
files speak.
"""

from __future__ import annotations

import logging
from pathlib import Path

from freezetune.core.atomic import atomic_write_text
from freezetune.core.config import CAUSAL_LM
from freezetune.core.errors import FreezetuneError
from freezetune.core.layout import LayerMap
from freezetune.core.model import check_model_folder, load_tokenizer
from freezetune.integrations.plan_exports import CAUSAL_ONLY, FILES, FORMATS
from freezetune.integrations.resolution import is_schedule_spec, resolve_on
from freezetune.integrations.target import Target, carried, target_model
from freezetune.io import defaults
from freezetune.runs.loading import load_data, load_model, make_task
from freezetune.runs.preflight import check_before_loading
from freezetune.runs.spec import RunSpec
from freezetune.scoring.sample import sample_batches
from freezetune.strategies.registry import check_spec, needs_context, resolve

log = logging.getLogger("freezetune")


def check_plan_request(strategy: str, fmt: str, task: str, output: str | Path, samples: int = 1) -> list[Path]:
    """Everything that can be refused before a model loads; returns the files that will be written."""
    check_spec(strategy)
    if samples < 1:
        raise FreezetuneError(f"--samples must be at least 1 (training rows auto scores), got {samples}")
    if fmt not in FORMATS:
        raise FreezetuneError(f"unknown --format {fmt}: choose from {', '.join(FORMATS)}")
    if is_schedule_spec(strategy):
        name = strategy.split(":", 1)[0]
        raise FreezetuneError(f"{name} is a schedule (its plan changes while training): a config holds one plan; train "
                              f"it with freezetune.FreezetuneCallback({name!r}) in transformers.Trainer or TRL")
    if fmt in CAUSAL_ONLY and task != CAUSAL_LM:
        raise FreezetuneError(f"{fmt} fine-tunes causal LMs: pass --task causal-lm, or write a classifier's plan with "
                              "--format json or peft")
    paths = [Path(output) / name for name in FILES[fmt]]
    existing = [p for p in paths if p.exists()]
    if existing:
        raise FreezetuneError(f"{existing[0]} exists: choose another --output (nothing is overwritten)")
    return paths


def export_plan(spec: RunSpec, strategy: str, fmt: str, output: str | Path, *, samples: int, seed: int,
                command: str) -> tuple[Target, list[Path]]:
    """Resolve ``strategy`` and write it in ``fmt`` under ``output``; return the target and the files."""
    paths = check_plan_request(strategy, fmt, spec.data.task, output, samples)
    causal_lm = spec.data.task == CAUSAL_LM
    if needs_context(strategy):
        target = _measured(spec.resolved(), strategy, samples=samples, seed=seed)
    else:
        model, gguf_file = _model_of(spec)
        check_model_folder(model, gguf_file)
        if gguf_file:  # its config is read from the GGUF file: seconds
            log.info("reading the layout of %s (%s) ...", model, gguf_file)
        hf = target_model(model, causal_lm=causal_lm, gguf_file=gguf_file,
                          trust_remote_code=spec.model.trust_remote_code)
        layers = LayerMap.from_model(hf)
        target = Target(resolve(strategy, layers), layers, model, causal_lm)
    files = FORMATS[fmt](target, command)
    Path(output).mkdir(parents=True, exist_ok=True)
    for path in paths:
        atomic_write_text(path, files[path.name])
    return target, paths


def _model_of(spec: RunSpec) -> tuple[str, str | None]:
    if spec.model.model is not None:
        return spec.model.model, spec.model.gguf_file
    return defaults.default_model(spec.data.task == CAUSAL_LM)


def _measured(spec: RunSpec, strategy: str, *, samples: int, seed: int) -> Target:
    check_before_loading([strategy], spec.model, spec.data.task, spec.data.retention)
    m = spec.model
    tokenizer = load_tokenizer(m.model, gguf_file=m.gguf_file, trust_remote_code=m.trust_remote_code)
    data = load_data(spec, tokenizer)
    task = make_task(spec, data)
    model = load_model(spec, task)
    batches = sample_batches(data.train, size=samples, seed=seed, pad_token_id=tokenizer.pad_token_id or 0)
    log.info("%s: scoring the model on %d training rows to choose the plan ...", strategy,
             sum(len(b["input_ids"]) for b in batches))
    plan, selections = resolve_on(model, strategy, sample=batches, task=task, seed=seed)
    causal_lm = spec.data.task == CAUSAL_LM
    hf = target_model(m.model, causal_lm=causal_lm, num_labels=len(getattr(task, "label_names", ())) or 2,
                      gguf_file=m.gguf_file, trust_remote_code=m.trust_remote_code)
    layers = LayerMap.from_model(hf)
    # the summary line, without what freezetune's own loop does with the choice (its cache)
    chosen = [s["explanation"].splitlines()[0].split("; ")[0] for s in selections if s.get("explanation")]
    return Target(carried(plan, LayerMap.from_model(model), layers), layers, m.model, causal_lm, tuple(chosen))
