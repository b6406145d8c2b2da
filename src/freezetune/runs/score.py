"""``freezetune score``'s work: every chosen scorer on a sample of the training data, what it costs, one plot."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch

from freezetune.core.errors import FreezetuneError
from freezetune.core.figures import new_figure, save_png
from freezetune.core.model import load_tokenizer
from freezetune.measure.units import format_duration
from freezetune.runs.loading import load_data, load_model, make_task
from freezetune.runs.spec import RunSpec
from freezetune.scoring.cost import run_estimate
from freezetune.scoring.result import LayerScores
from freezetune.scoring.sample import sample_batches
from freezetune.scoring.scorers import SCORERS, score

log = logging.getLogger("freezetune")


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
        log.info("scoring the blocks with %s on %d rows ...", name, sum(len(b["input_ids"]) for b in sample))
        result = score(model, sample, name, task=task)
        result.details["share_of_full_run"] = result.seconds / estimate["run_s"]
        results.append(result)
    return results, estimate


def plot_scores(results: list[LayerScores], path: str | Path) -> Path:
    """One PNG comparing the scorers side by side: a panel per scorer, blocks on x, scores as bars."""
    columns = min(3, len(results))
    rows = math.ceil(len(results) / columns)
    figure = new_figure(3.6 * columns + 0.6, 2.8 * rows + 0.6)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for panel, result in zip(axes, results):
        blocks = list(range(result.num_blocks))
        panel.bar(blocks, result.scores, color=["tab:blue" if s >= 0 else "tab:red" for s in result.scores])
        panel.axhline(0, color="black", linewidth=0.6)
        panel.set_xticks(blocks)
        panel.set(title=f"{result.scorer} ({format_duration(result.seconds)})", xlabel="block (0 = input side)",
                  ylabel="score (normalised)")
    for panel in axes[len(results):]:
        panel.set_visible(False)
    figure.suptitle("per-block scores: higher = more worth training")
    return save_png(figure, path)
