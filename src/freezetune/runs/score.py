"""``freezetune score``'s work: every chosen scorer on a sample of the training data, and what it costs."""

from __future__ import annotations

import torch

from freezetune.core.errors import FreezetuneError
from freezetune.core.model import load_tokenizer
from freezetune.runs.loading import load_data, load_model, make_task
from freezetune.runs.run import RunSpec
from freezetune.scoring.cost import run_estimate
from freezetune.scoring.result import LayerScores
from freezetune.scoring.sample import sample_batches
from freezetune.scoring.scorers import SCORERS, score


def score_training_data(spec: RunSpec, scorers: list[str], *, samples: int, seed: int,
                        epochs: int) -> tuple[list[LayerScores], dict[str, float]]:
    """Scores of every scorer in ``scorers`` ('all': every one), each with its share of one full run.

    The estimate of one full fine-tuning run (``epochs`` over the training split) is timed on the
    same sample, so each scorer's cost can be read as a share of what training would cost.
    """
    if epochs < 1:
        raise FreezetuneError(f"--epochs must be at least 1, got {epochs}")
    names = list(SCORERS) if "all" in scorers else list(dict.fromkeys(scorers or ["semantic"]))
    spec = spec.resolved()
    tokenizer = load_tokenizer(spec.model.model, gguf_file=spec.model.gguf_file,
                               trust_remote_code=spec.model.trust_remote_code)
    data = load_data(spec, tokenizer)
    task = make_task(spec, data)
    model = load_model(spec, task)
    torch.manual_seed(seed)
    sample = sample_batches(data.train, size=samples, seed=seed, pad_token_id=tokenizer.pad_token_id or 0)
    estimate = run_estimate(model, sample, rows=len(data.train), batch_size=len(sample[0]["labels"]), epochs=epochs,
                            task=task)
    results = []
    for name in names:
        result = score(model, sample, name, task=task)
        result.details["share_of_full_run"] = result.seconds / estimate["run_s"]
        results.append(result)
    return results, estimate
