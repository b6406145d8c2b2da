"""Gradient scorers: ``gradient`` (relative gradient norm), ``snr`` and ``fisher``; one forward +
backward per batch, per block and per tensor. docs/scoring.md has the formulas.

The loss is the task's own (``task.loss(outputs, targets)`` after ``task.split(batch)``): the
classifier's cross-entropy, or a causal LM's next-token cross-entropy on its target tokens.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from freezetune.core.device import device_of
from freezetune.core.errors import FreezetuneError
from freezetune.core.layout import LayerMap, block_unit
from freezetune.scoring.probes import no_targets, normalise, split_batch, task_for, timed, untouched
from freezetune.scoring.result import LayerScores
from freezetune.scoring.sample import DEFAULT_SAMPLES, take
from freezetune.tasks.task import Task


# ---------------------------------------------------------------------- gradient scorers
@dataclass
class _GradStats:
    names: list[str]
    numel: dict[str, int]
    weight_norm: dict[str, float]
    sq: dict[str, list[float]]  # per tensor: squared gradient norm of every batch
    sizes: list[int]  # rows per batch
    terms: list[int]  # per batch: what its mean loss averages over (rows; a causal LM's target tokens)
    total: dict[str, torch.Tensor]  # per tensor: sum of the batch gradients weighted by rows (float32)

    @functools.cached_property
    def mean_sq(self) -> dict[str, float]:
        """Per tensor: the squared norm of the row-weighted mean gradient (snr's signal, the noise scale's |ḡ|²)."""
        rows = sum(self.sizes)
        return {n: float((t / rows).double().pow(2).sum()) for n, t in self.total.items()}


def _gradient_stats(model, task: Task, batches, max_samples, *, max_batches: int | None) -> _GradStats:
    """One forward + backward per batch, every parameter trainable, eval mode; ``.grad`` untouched.

    Gradients come from ``torch.autograd.grad`` (nothing accumulates into ``.grad``) of the task's
    mean loss over the batch. A causal LM batch without target tokens has no loss and is skipped.
    The row-weighted sum of the batch gradients (one float32 copy of the weights) gives snr its
    mean gradient and every scorer its noise scale.
    """
    named = list(model.named_parameters())
    names = [n for n, _ in named]
    stats = _GradStats(
        names, {n: p.numel() for n, p in named},
        {n: float(p.detach().double().norm()) for n, p in named},
        {n: [] for n in names}, [], [], {},
    )
    device = device_of(model)
    with untouched(model, trainable=True):
        for index, batch in enumerate(take(batches, max_samples)):
            if max_batches is not None and index >= max_batches:
                break
            inputs, targets, terms = split_batch(task, batch, device)
            if terms == 0:
                continue
            loss = task.loss(model(**inputs), targets)
            grads = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True)
            rows = len(targets)
            stats.sizes.append(rows)
            stats.terms.append(terms)
            for name, grad in zip(names, grads):
                if grad is None:
                    stats.sq[name].append(0.0)
                    continue
                stats.sq[name].append(float(grad.detach().double().pow(2).sum()))
                weighted = grad.detach().float() * rows
                total = stats.total.get(name)
                stats.total[name] = weighted if total is None else total.add_(weighted)
    return stats


def noise_scale(stats: _GradStats, names: list[str]) -> float | None:
    """The gradient noise scale of ``names`` in rows: tr(Σ) / |G|², Σ one row's gradient covariance and
    G the mean gradient (McCandlish et al. 2018, arXiv 1812.06162). A training set of N rows resolves the
    direction of these weights' gradient only when N exceeds it. None: fewer than 2 batches, or no mean
    gradient above the sampling noise.

    A batch of b rows has E|g_b|² = |G|² + tr(Σ)/b, and the row-weighted mean of all batches
    E|ḡ|² = |G|² + tr(Σ)/R (R rows in all); the two give tr(Σ) and |G|² without bias.
    """
    sizes = stats.sizes
    rows = sum(sizes)
    if len(sizes) < 2:
        return None
    small = sum(sum(stats.sq[n]) for n in names) / len(sizes)  # mean over batches of |g_b|²
    big = sum(stats.mean_sq.get(n, 0.0) for n in names)  # |ḡ|²
    spread = sum(1 / b for b in sizes) / len(sizes) - 1 / rows
    trace = (small - big) / spread
    signal = big - trace / rows
    return trace / signal if signal > 0 and trace > 0 else None


def _tensor_normalise(values: dict[str, float], layers: LayerMap) -> dict[str, float]:
    """Divide by the largest *block* tensor's score (a fresh head's would dwarf every block)."""
    block_names = layers.block_of_tensor()
    top = max((v for n, v in values.items() if n in block_names and math.isfinite(v)), default=0.0)
    return {n: (v / top if top > 0 else 0.0) for n, v in values.items()}


def _from_gradients(name: str, model, batches, layers, task, max_samples, max_batches, *,
                    measure: Callable[[_GradStats], Callable[[list[str]], float]]) -> LayerScores:
    """A gradient scorer: ``measure(stats)`` maps a list of tensor names to a value; applied per
    block (raw scores, normalised by the max) and per tensor (``tensor_scores``). Every block's
    noise scale comes along (``noise_scale``)."""
    task_ = task_for(model, task, name)

    def run() -> LayerScores:
        layers_ = layers or LayerMap.from_model(model)
        stats = _gradient_stats(model, task_, batches, max_samples, max_batches=max_batches)
        if not stats.sizes:
            raise no_targets(name)
        value = measure(stats)
        blocks = [layers_.units[block_unit(i)] for i in range(layers_.num_blocks)]
        raw = [value(names) for names in blocks]
        tensors = _tensor_normalise({n: value([n]) for n in stats.names}, layers_)
        return LayerScores(name, normalise(raw), raw=raw, tensor_scores=tensors,
                           samples=sum(stats.sizes), batches=len(stats.sizes),
                           noise_scale=[noise_scale(stats, names) for names in blocks])

    return timed(name, run)


def score_gradient(model, batches, *, layers: LayerMap | None = None, task: Task | None = None,
                   max_samples: int | None = DEFAULT_SAMPLES, max_batches: int | None = None) -> LayerScores:
    """Relative gradient norm ‖g_b‖ / ‖θ_b‖ of each block, averaged over batches, / the max."""

    def measure(st: _GradStats) -> Callable[[list[str]], float]:
        def rgn(names: list[str]) -> float:
            weight = math.sqrt(sum(st.weight_norm[n] ** 2 for n in names))
            weight = max(weight, 1e-3 * math.sqrt(sum(st.numel[n] for n in names)))  # zero-init tensors
            per_batch = [math.sqrt(sum(st.sq[n][b] for n in names)) for b in range(len(st.sizes))]
            return sum(per_batch) / len(per_batch) / weight

        return rgn

    return _from_gradients("gradient", model, batches, layers, task, max_samples, max_batches,
                           measure=measure)


def score_snr(model, batches, *, layers: LayerMap | None = None, task: Task | None = None,
              max_samples: int | None = DEFAULT_SAMPLES, max_batches: int | None = None) -> LayerScores:
    """Gradient signal-to-noise per block: ‖mean g‖ / sqrt(sum_b ‖g_b - mean g‖² / (B-1)), / the max."""

    def measure(st: _GradStats) -> Callable[[list[str]], float]:
        count = len(st.sizes)
        if count < 2:
            raise FreezetuneError(f"snr needs at least 2 batches to measure gradient noise, got {count}")

        def snr(names: list[str]) -> float:
            signal = sum(st.mean_sq.get(n, 0.0) for n in names)
            noise = (sum(sum(st.sq[n]) for n in names) - count * signal) / (count - 1)
            return math.sqrt(signal / max(noise, 1e-30)) if signal > 0 else 0.0

        return snr

    return _from_gradients("snr", model, batches, layers, task, max_samples, max_batches,
                           measure=measure)


def score_fisher(model, batches, *, layers: LayerMap | None = None, task: Task | None = None,
                 max_samples: int | None = DEFAULT_SAMPLES, max_batches: int | None = None) -> LayerScores:
    """Diagonal empirical Fisher per parameter (mean over batches of n_b · g_b², n_b the terms the
    batch's loss averages: rows, or a causal LM's target tokens), averaged over each block's
    parameters, / the max."""

    def measure(st: _GradStats) -> Callable[[list[str]], float]:
        terms = sum(st.terms)

        def fisher(names: list[str]) -> float:
            total = sum(size * st.sq[n][b] for n in names for b, size in enumerate(st.terms))
            return total / terms / max(1, sum(st.numel[n] for n in names))

        return fisher

    return _from_gradients("fisher", model, batches, layers, task, max_samples, max_batches,
                           measure=measure)
