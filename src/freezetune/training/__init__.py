"""Training: the Finetuner loop over a Plan or a Schedule, and the pieces it drives."""

from freezetune.training.callbacks import Callback
from freezetune.training.finetuner import Finetuner
from freezetune.training.prefix_cache import CacheStore
from freezetune.training.state import FitResult, TrainState

__all__ = ["CacheStore", "Callback", "Finetuner", "FitResult", "TrainState"]
