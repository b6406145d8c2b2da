"""``RunSpec``: everything one training run needs, as the CLI flags and YAML keys name it.

Its own module so that the modules a run is made of (loading, preflight, the sweep, scoring a
sample) can name it without importing the run that uses them.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

from freezetune.core.config import CAUSAL_LM, DataConfig, ModelConfig, TrainConfig
from freezetune.core.errors import FreezetuneError
from freezetune.io import defaults
from freezetune.runs.paths import absolute_paths


@dataclass
class RunSpec:
    """Everything a training run needs; the resolved form is saved as ``config.yaml``."""

    strategy: str = "lower_half"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    output: str | None = None
    overwrite: bool = False

    def resolved(self) -> RunSpec:
        """Fill the defaults that depend on what is installed (embedded model and data)."""
        data = DataConfig(**asdict(self.data))
        model = ModelConfig(**asdict(self.model))
        if data.data is None:
            if data.task == CAUSAL_LM:
                raise FreezetuneError("--task causal-lm needs --data: a text file, or a table with a text column or "
                                      "prompt and response columns")
            data.data = defaults.default_data_path()
            data.text_column = data.text_column or defaults.DEFAULT_TEXT_COLUMN
            data.label_column = data.label_column or defaults.DEFAULT_LABEL_COLUMN
        data.text_column = data.text_column or "text"
        data.label_column = data.label_column or "label"
        if model.model is None:
            model.model, gguf_file = defaults.default_model(data.task == CAUSAL_LM)
            model.gguf_file = gguf_file or model.gguf_file
        for config in (data, model):  # absolute in config.yaml: it repeats the run from any folder
            for key, value in absolute_paths(asdict(config)).items():
                setattr(config, key, value)
        train = TrainConfig(**asdict(self.train))
        output = os.path.abspath(os.path.expanduser(self.output)) if self.output else None
        return RunSpec(self.strategy, data, model, train, output, self.overwrite)

    def flat(self) -> dict[str, Any]:
        """One flat mapping with the same keys as the CLI flags (and YAML configs)."""
        return {
            "strategy": self.strategy,
            **asdict(self.data),
            **asdict(self.model),
            **asdict(self.train),
            "output": self.output,
        }
