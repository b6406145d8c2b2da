"""freezetune: decide where to fine-tune a pretrained transformer, then fine-tune there, fast."""

from .config import DataConfig, ModelConfig, TrainConfig
from .data import load_classification_data
from .errors import FreezetuneError
from .layout import LayerMap
from .model import load_classifier, load_tokenizer
from .plan import LoraSpec, Plan
from .strategies import REGISTRY as STRATEGIES
from .strategies import resolve
from .train import Finetuner

__version__ = "0.1.0"

__all__ = [
    "DataConfig", "Finetuner", "FreezetuneError", "LayerMap", "LoraSpec", "ModelConfig", "Plan",
    "STRATEGIES", "TrainConfig", "load_classification_data", "load_classifier", "load_tokenizer", "resolve",
]
