"""freezetune: decide where to fine-tune a pretrained transformer, then fine-tune there, fast."""

from freezetune.core.config import DataConfig, ModelConfig, TrainConfig
from freezetune.core.errors import FreezetuneError
from freezetune.core.layout import LayerMap
from freezetune.core.model import load_classifier, load_tokenizer
from freezetune.core.plan import LoraSpec, Plan
from freezetune.io.data import load_classification_data
from freezetune.strategies.registry import REGISTRY as STRATEGIES
from freezetune.strategies.registry import resolve
from freezetune.training.finetuner import Finetuner

__version__ = "0.1.0"

__all__ = [
    "DataConfig", "Finetuner", "FreezetuneError", "LayerMap", "LoraSpec", "ModelConfig", "Plan",
    "STRATEGIES", "TrainConfig", "load_classification_data", "load_classifier", "load_tokenizer", "resolve",
]
