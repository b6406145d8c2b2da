"""Forward-only scorers: ``semantic`` (after arXiv 2406.11753) and ``variability`` (NC1, arXiv 2210.10041).

For a sequence classifier both read the pooled hidden state at every block boundary 0..L. For a
causal LM ``semantic`` reads every boundary through the logit lens (:mod:`freezetune.scoring.lens`)
and ``variability``, which needs classes, refuses. docs/scoring.md has the formulas.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from freezetune.core.errors import FreezetuneError
from freezetune.core.layout import LayerMap
from freezetune.scoring.lens import lens_trace, readout
from freezetune.scoring.probes import (
    classes,
    is_causal,
    normalise,
    pooled_states,
    standardise,
    task_for,
    timed,
    untouched,
)
from freezetune.scoring.result import LayerScores
from freezetune.scoring.sample import DEFAULT_SAMPLES
from freezetune.tasks.task import Task


# ---------------------------------------------------------------------- semantic
def semantic_deviation(x: torch.Tensor, labels: torch.Tensor) -> tuple[float, float, float]:
    """(D, temperature s, accuracy) of a leave-one-out nearest-centroid readout of ``x``.

    Features are z-scored; p(c | x_i) = softmax_c(s * cos(x_i, mu_c) + log pi_c), where mu_c is
    the mean of class c without x_i itself (leave-one-out) and pi_c the class frequency. D is
    the mean cross-entropy at the best single temperature s >= 0 (CE is convex in s), so
    0 <= D <= H(pi): D = H(pi) means the readout knows nothing beyond the class frequencies.
    Examples that are alone in their class have no leave-one-out centroid and are skipped.
    """
    y, counts = classes(labels)
    z = standardise(x.double())
    n_classes = len(counts)
    sums = torch.zeros(n_classes, z.size(1), dtype=z.dtype).index_add_(0, y, z)
    centroids = sums / counts[:, None]
    unit = F.normalize(z, dim=1)
    cos = unit @ F.normalize(centroids, dim=1).T
    n_own = counts[y]
    keep = n_own > 1
    if not bool(keep.any()):
        raise FreezetuneError("semantic scoring needs at least 2 examples of some class in the sample")
    own = (sums[y] - z)[keep] / (n_own[keep] - 1)[:, None]
    cos = cos[keep]
    yk = y[keep]
    cos[torch.arange(len(yk)), yk] = (unit[keep] * F.normalize(own, dim=1)).sum(1)
    log_prior = torch.log(counts.double() / counts.sum())

    def ce(s: float) -> float:
        return float(F.cross_entropy(s * cos + log_prior, yk))

    low, high = 0.0, 200.0  # cosines lie in [-1, 1]: s = 200 is already a hard argmax
    ratio = (math.sqrt(5) - 1) / 2
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    fa, fb = ce(a), ce(b)
    for _ in range(60):  # golden-section search: CE is convex in s
        if fa <= fb:
            high, b, fb = b, a, fa
            a = high - ratio * (high - low)
            fa = ce(a)
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = ce(b)
    s = (low + high) / 2
    candidates = [(ce(s), s), (ce(0.0), 0.0)]
    deviation, s = min(candidates)
    accuracy = float(((s * cos + log_prior).argmax(1) == yk).double().mean())
    return deviation, s, accuracy


def shortfall(trace: list[float]) -> tuple[list[float], list[float]]:
    """(virtual trace V, block shortfalls): V_l = D_0 + (l / L)(D_L - D_0) gives every block an equal
    share of the total reduction; block b's shortfall is (D_{b+1} - V_{b+1}) - (D_b - V_b)."""
    n = len(trace) - 1
    virtual = [trace[0] + (trace[n] - trace[0]) * b / n for b in range(n + 1)]
    gap = [d - v for d, v in zip(trace, virtual)]
    return virtual, [gap[b + 1] - gap[b] for b in range(n)]


def score_semantic(model, batches, *, layers: LayerMap | None = None, task: Task | None = None,
                   max_samples: int | None = DEFAULT_SAMPLES) -> LayerScores:
    """Forward only. Block b's score is how far it falls behind an equal share of the reduction
    of the semantic deviation D from boundary 0 to L: (D_{b+1} - V_{b+1}) - (D_b - V_b), where
    V is the virtual (linear) trace from D_0 to D_L; normalised by the largest magnitude.

    D_l is, for a sequence classifier, the cross-entropy of a leave-one-out nearest-centroid
    readout of the pooled state at boundary l; for a causal LM (``task`` the causal LM task, or a
    ``CausalLM`` model), the logit lens: the mean next-token cross-entropy, over the sample's
    target tokens (shifted label != -100), of ``lm_head(final_norm(h_l))``.
    """
    task_ = task_for(model, task, "semantic")

    def run() -> LayerScores:
        layers_ = layers or LayerMap.from_model(model)
        if is_causal(task_):
            return _semantic_lens(model, layers_, task_, batches, max_samples)
        with untouched(model, trainable=False):
            states, labels, count = pooled_states(model, layers_, batches, max_samples)
        readouts = [semantic_deviation(x, labels) for x in states]
        trace = [r[0] for r in readouts]
        virtual, raw = shortfall(trace)
        return LayerScores(
            "semantic", normalise(raw), raw=raw, boundary_trace=trace,
            trace_name="semantic deviation D_l (nats)", samples=len(labels), batches=count,
            details={
                "virtual_trace": virtual,
                "temperature": [r[1] for r in readouts],
                "centroid_accuracy": [r[2] for r in readouts],
                "label_entropy": _entropy(labels),
            },
        )

    return timed("semantic", run)


def _semantic_lens(model, layers: LayerMap, task: Task, batches, max_samples) -> LayerScores:
    reader = readout(model, layers)
    with untouched(model, trainable=False):
        lens = lens_trace(model, layers, task, batches, max_samples, reader)
    trace = [s / lens.tokens for s in lens.loss_sums]
    model_loss = lens.model_loss_sum / lens.tokens
    if abs(trace[-1] - model_loss) > 1e-3 * max(1.0, model_loss):
        # The last boundary read through the lens must be the model itself; if not, the readout missed
        # part of the head (a norm registered elsewhere, a logit transform) and every D_l is off.
        raise FreezetuneError(
            f"semantic's logit lens does not reproduce this model's own loss ({trace[-1]:.4f} vs {model_loss:.4f}: "
            f"read through {reader.norm_name or 'no norm'} + {reader.lm_head_name}); score it with auto:gradient"
        )
    virtual, raw = shortfall(trace)
    return LayerScores(
        "semantic", normalise(raw), raw=raw, boundary_trace=trace,
        trace_name="logit-lens next-token cross-entropy D_l (nats)", samples=lens.rows, batches=lens.batches,
        details={
            "readout": "logit_lens",
            "virtual_trace": virtual,
            "lens_accuracy": [r / lens.tokens for r in lens.right],
            "target_tokens": lens.tokens,
            "model_loss": model_loss,  # = D_L, checked above
            "final_norm": reader.norm_name,
            "lm_head": reader.lm_head_name,
        },
    )


def _entropy(labels: torch.Tensor) -> float:
    _, counts = torch.unique(labels, return_counts=True)
    p = counts.double() / counts.sum()
    return float(-(p * p.log()).sum())


# ---------------------------------------------------------------------- variability (NC1)
def nc1(x: torch.Tensor, labels: torch.Tensor) -> float:
    """Within- / between-class variability, tr(Sigma_W Sigma_B^+) / C, of z-scored features.

    Sigma_B has rank <= C-1, so the trace runs over its C-1 directions v_k with eigenvalues
    s_k: sum_k (v_k' Sigma_W v_k) / s_k, with no H x H matrix formed.
    """
    y, counts = classes(labels)
    z = standardise(x.double())
    means = torch.zeros(len(counts), z.size(1), dtype=z.dtype).index_add_(0, y, z) / counts[:, None]
    within = z - means[y]
    between = (means - z.mean(0)) / math.sqrt(len(counts))
    _, singular, vh = torch.linalg.svd(between, full_matrices=False)
    keep = singular > singular.max() * 1e-8
    if not bool(keep.any()):
        return math.inf
    projected = within @ vh[keep].T  # [N, k]
    spread = projected.pow(2).mean(0)  # v_k' Sigma_W v_k
    return float((spread / singular[keep].pow(2)).sum() / len(counts))


def score_variability(model, batches, *, layers: LayerMap | None = None, task: Task | None = None,
                      max_samples: int | None = DEFAULT_SAMPLES) -> LayerScores:
    """Forward only. Block b's score is log NC1_{b+1} - log NC1_b: positive when the block makes
    the classes *less* separable (the representation drifts from the task), normalised by the
    largest magnitude. The most task-ready boundary (lowest NC1) is in ``details``.
    Classes are needed: a causal LM is refused."""
    if is_causal(task_for(model, task, "variability")):
        raise FreezetuneError("variability measures how pooled states separate classes and a causal LM has none: "
                              "use semantic (logit lens) or gradient, snr, fisher")

    def run() -> LayerScores:
        layers_ = layers or LayerMap.from_model(model)
        with untouched(model, trainable=False):
            states, labels, count = pooled_states(model, layers_, batches, max_samples)
        trace = [nc1(x, labels) for x in states]
        logs = [math.log(max(v, 1e-300)) for v in trace]
        steps = [logs[b + 1] - logs[b] for b in range(len(trace) - 1)]
        return LayerScores(
            "variability", normalise(steps), raw=steps, boundary_trace=trace,
            trace_name="within/between variability NC1_l", samples=len(labels), batches=count,
            details={"most_task_ready_boundary": int(np.argmin(trace))},
        )

    return timed("variability", run)
