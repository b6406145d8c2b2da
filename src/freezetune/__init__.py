"""freezetune: decide where to fine-tune a pretrained transformer, then fine-tune there, fast.

The public API is imported on first use (PEP 562), so ``import freezetune`` and the command
line's ``--help`` stay instant: torch loads only when something that needs it is touched.
``from freezetune import Finetuner`` works as usual.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> the module that defines it
_PUBLIC = {
    "DataConfig": "freezetune.core.config",
    "ModelConfig": "freezetune.core.config",
    "TrainConfig": "freezetune.core.config",
    "FreezetuneError": "freezetune.core.errors",
    "LayerMap": "freezetune.core.layout",
    "load_classifier": "freezetune.core.model",
    "load_tokenizer": "freezetune.core.model",
    "LoraSpec": "freezetune.core.plan",
    "Plan": "freezetune.core.plan",
    "load_classification_data": "freezetune.io.data",
    "Task": "freezetune.tasks.task",
    "SequenceClassification": "freezetune.tasks.classification",
    "ResolveContext": "freezetune.strategies.registry",
    # through runs, which imports scoring: the registry is complete once `auto` and `auto_rgn` are in it
    "STRATEGIES": "freezetune.runs",
    "resolve": "freezetune.runs",
    "Schedule": "freezetune.strategies.schedules",
    "Callback": "freezetune.training.callbacks",
    "CacheStore": "freezetune.training.prefix_cache",
    "FitResult": "freezetune.training.state",
    "sample_batches": "freezetune.scoring.sample",
    "score": "freezetune.scoring.scorers",
    "Finetuner": "freezetune.runs.finetuner",
    "RunSpec": "freezetune.runs.spec",
    "run_training": "freezetune.runs.run",
    "Sweep": "freezetune.runs.sweep",
    "run_sweep": "freezetune.runs.sweep",
    "build_report": "freezetune.report",
    "apply": "freezetune.integrations.apply",
    "FreezetuneCallback": "freezetune.integrations.trainer_callback",
}
_LAYERS = ("core", "io", "measure", "tasks", "strategies", "training", "scoring", "integrations", "runs", "serve",
           "report")

__all__ = sorted([*_PUBLIC, "__version__"])


def __getattr__(name: str):
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
    elif name in _LAYERS:
        value = importlib.import_module(f"freezetune.{name}")
    else:
        raise AttributeError(f"module 'freezetune' has no attribute {name!r}")
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC, *_LAYERS])
