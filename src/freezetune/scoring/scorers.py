"""Per-block scores: how much is each block worth training, measured before training.

Every scorer reads a small labelled sample (default: at most 256 rows) of padded dict batches
(``input_ids``, ``attention_mask``, [``token_type_ids``], ``labels``) and returns
:class:`LayerScores`: one score per block, 0..L-1 from the input, higher = more worth training.
``task=`` names what the labels mean (default: the model's own — a ``CausalLM`` is scored as a
causal LM with per-token labels, -100 where nothing is predicted; anything else as a sequence
classifier with one class id per row).

* forward only — ``semantic`` (after arXiv 2406.11753) and ``variability`` (NC1, after arXiv
  2210.10041) read the pooled hidden state at every block boundary 0..L; on a causal LM
  ``semantic`` reads every boundary through the logit lens and ``variability`` (classes needed)
  refuses;
* one forward + backward per batch of the task's loss — ``gradient`` (relative gradient norm),
  ``snr`` (gradient signal-to-noise) and ``fisher`` (diagonal empirical Fisher); they also give
  per-tensor scores.

The exact formulas, and which parts are ours rather than the papers', are in docs/scoring.md.
Every scorer leaves the model exactly as it found it: weights, train/eval mode of every module,
``requires_grad`` and ``.grad`` of every parameter. The model runs in eval mode (no dropout),
so a fixed sample gives the same scores every time.
"""

from __future__ import annotations

from collections.abc import Callable

from freezetune.core.errors import FreezetuneError
from freezetune.core.layout import LayerMap
from freezetune.scoring.forward_scorers import score_semantic, score_variability
from freezetune.scoring.gradient_scorers import score_fisher, score_gradient, score_snr
from freezetune.scoring.result import LayerScores
from freezetune.tasks.task import Task

# ---------------------------------------------------------------------- registry
SCORERS: dict[str, Callable[..., LayerScores]] = {
    "semantic": score_semantic,
    "variability": score_variability,
    "gradient": score_gradient,
    "snr": score_snr,
    "fisher": score_fisher,
}


TENSOR_SCORERS = ("gradient", "snr", "fisher")  # those that also score every tensor


def score(model, batches, scorer: str, *, layers: LayerMap | None = None, task: Task | None = None,
          **options) -> LayerScores:
    """Run the scorer named ``scorer`` (see ``SCORERS``) on a labelled sample, for ``task``."""
    fn = SCORERS.get(scorer)
    if fn is None:
        raise FreezetuneError(f"unknown scorer {scorer!r}; known: {', '.join(SCORERS)}")
    return fn(model, batches, layers=layers, task=task, **options)
