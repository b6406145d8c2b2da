"""Per-block scores: how much is each block worth training, measured before training.

Every scorer reads a small labelled sample (default: at most 256 rows) of padded dict batches
(``input_ids``, ``attention_mask``, [``token_type_ids``], ``labels``) and returns
:class:`LayerScores`: one score per block, 0..L-1 from the input, higher = more worth training.

* forward only — ``semantic`` (after arXiv 2406.11753) and ``variability`` (NC1, after arXiv
  2210.10041) read the pooled hidden state at every block boundary 0..L;
* one forward + backward per batch — ``gradient`` (relative gradient norm), ``snr`` (gradient
  signal-to-noise) and ``fisher`` (diagonal empirical Fisher); they also give per-tensor scores.

The exact formulas, and which parts are ours rather than the papers', are in docs/scoring.md.
Every scorer leaves the model exactly as it found it: weights, train/eval mode of every module,
``requires_grad`` and ``.grad`` of every parameter. The model runs in eval mode (no dropout),
so a fixed sample gives the same scores every time.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from freezetune.core.errors import FreezetuneError
from freezetune.core.layout import LayerMap, block_unit
from freezetune.core.model import pool_hidden

DEFAULT_SAMPLES = 256
_MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


# ---------------------------------------------------------------------- the result
@dataclass
class LayerScores:
    scorer: str
    scores: list[float]  # per block 0..L-1, normalised; higher = more worth training
    raw: list[float] = field(default_factory=list)  # per block, before normalisation (scorer's units)
    boundary_trace: list[float] | None = None  # per boundary 0..L (semantic: D_l; variability: NC1_l)
    trace_name: str = ""
    tensor_scores: dict[str, float] | None = None  # per parameter tensor (gradient scorers)
    seconds: float = 0.0
    samples: int = 0
    batches: int = 0
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def num_blocks(self) -> int:
        return len(self.scores)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LayerScores:
        return cls(**data)

    def table(self) -> str:
        """Scores per block with a bar, then the boundary trace (when the scorer has one)."""
        lines = [
            f"scorer: {self.scorer} ({self.samples} examples, {self.batches} batches, {self.seconds:.2f} s); "
            "blocks from 0 at the input; higher = more worth training",
            f"{'block':>5} {'score':>7} {'raw':>11}",
        ]
        for i, value in enumerate(self.scores):
            bar = ("+" if value >= 0 else "-") * round(abs(value) * 20)
            raw = f"{self.raw[i]:>11.4g}" if i < len(self.raw) else " " * 11
            lines.append(f"{i:>5} {value:>+7.3f} {raw}  {bar}")
        if self.boundary_trace is not None:
            lines.append(f"{self.trace_name or 'trace'} at boundaries 0..{len(self.boundary_trace) - 1}:")
            lines.append("  " + "  ".join(f"{v:.4g}" for v in self.boundary_trace))
            virtual = self.details.get("virtual_trace")
            if virtual is not None:
                lines.append("  virtual: " + "  ".join(f"{v:.4g}" for v in virtual))
        return "\n".join(lines)

    def plot(self, path: str | Path) -> Path:
        """A PNG: scores per block as bars, and the boundary trace (factual and virtual) below."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure  # no pyplot: no global backend state

        rows = 2 if self.boundary_trace is not None else 1
        figure = Figure(figsize=(6.4, 2.6 * rows + 0.4))
        FigureCanvasAgg(figure)
        axes = figure.subplots(rows, 1, squeeze=False)[:, 0]
        blocks = list(range(self.num_blocks))
        colours = ["tab:blue" if s >= 0 else "tab:red" for s in self.scores]
        axes[0].bar(blocks, self.scores, color=colours)
        axes[0].axhline(0, color="black", linewidth=0.6)
        axes[0].set(xlabel="block (0 = input side)", ylabel="score", title=f"{self.scorer} scores")
        axes[0].set_xticks(blocks)
        if self.boundary_trace is not None:
            bounds = list(range(len(self.boundary_trace)))
            axes[1].plot(bounds, self.boundary_trace, marker="o", label="factual")
            if self.details.get("virtual_trace") is not None:
                axes[1].plot(bounds, self.details["virtual_trace"], linestyle="--", label="virtual")
                axes[1].legend()
            axes[1].set(xlabel="boundary l (0 = embeddings output)", ylabel=self.trace_name or "trace")
            axes[1].set_xticks(bounds)
        figure.tight_layout()
        path = Path(path)
        figure.savefig(path, format="png", dpi=100)
        return path


# ---------------------------------------------------------------------- leaving the model untouched
@contextlib.contextmanager
def _untouched(model: nn.Module, *, trainable: bool):
    """Eval mode (and optionally every parameter trainable) inside; everything restored after."""
    modes = [(m, m.training) for m in model.modules()]
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    grads = [p.grad for p in params]
    try:
        model.eval()
        if trainable:
            for p in params:
                p.requires_grad_(True)
        yield
    finally:
        for module, mode in modes:
            module.training = mode
        for p, flag, grad in zip(params, flags, grads):
            p.requires_grad_(flag)
            p.grad = grad


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _take(batches: Iterable[dict], max_samples: int | None) -> Iterator[dict]:
    """Labelled batches up to ``max_samples`` rows (the last one cut); clear errors otherwise."""
    if max_samples is not None and max_samples < 1:
        raise FreezetuneError(f"the scoring sample needs at least 1 example, got max_samples={max_samples}")
    seen = 0
    for batch in batches:
        if "labels" not in batch or batch["labels"] is None:
            raise FreezetuneError("scoring needs labelled examples: a batch of the sample has no 'labels'")
        labels = torch.as_tensor(batch["labels"])
        if labels.ndim != 1:
            raise FreezetuneError("scoring supports sequence classification: labels must be one class id per example")
        if max_samples is not None and seen + len(labels) > max_samples:
            keep = max_samples - seen
            batch = {k: v[:keep] for k, v in batch.items() if v is not None}
        if len(batch["labels"]) == 0:
            break
        seen += len(batch["labels"])
        yield batch
        if max_samples is not None and seen >= max_samples:
            break
    if seen == 0:
        raise FreezetuneError("the scoring sample is empty: give at least one labelled example")


def _inputs(batch: dict, device: torch.device) -> dict[str, torch.Tensor]:
    return {k: torch.as_tensor(batch[k]).to(device) for k in _MODEL_INPUTS if batch.get(k) is not None}


def _pooled_states(model, layers: LayerMap, batches, max_samples) -> tuple[list[torch.Tensor], torch.Tensor, int]:
    """Pooled hidden states at boundaries 0..L (float64, [N, H] each), the labels [N], the batch count.

    Boundary 0 is block 0's input (the embeddings' output); boundary l is block l-1's output.
    The model's own pooling is used (``cls`` reads position 0: no pooler exists between blocks).
    """
    blocks = layers.blocks
    captured: list[torch.Tensor] = []

    def before(module, args, kwargs):
        captured.append(args[0] if args else kwargs["hidden_states"])

    def after(module, args, output):
        captured.append(output[0] if isinstance(output, (tuple, list)) else output)

    pooling = getattr(model, "pooling", "mean")
    pooled: list[list[torch.Tensor]] = [[] for _ in range(len(blocks) + 1)]
    labels = []
    hooks = [blocks[0].register_forward_pre_hook(before, with_kwargs=True)]
    hooks += [block.register_forward_hook(after) for block in blocks]
    device = _device(model)
    try:
        with torch.no_grad():
            for batch in _take(batches, max_samples):
                inputs = _inputs(batch, device)
                captured.clear()
                model(**inputs)
                mask = inputs["attention_mask"]
                for l, hidden in enumerate(captured[: len(blocks) + 1]):
                    pooled[l].append(pool_hidden(hidden, mask, pooling).double().cpu())
                labels.append(torch.as_tensor(batch["labels"]).long().cpu())
    finally:
        for hook in hooks:
            hook.remove()
    return [torch.cat(p) for p in pooled], torch.cat(labels), len(labels)


def _standardise(x: torch.Tensor) -> torch.Tensor:
    """z-score every feature over the sample: no rogue dimension dominates distances."""
    return (x - x.mean(0)) / x.std(0, unbiased=False).clamp_min(1e-8)


def _classes(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels as 0..C-1 and the counts per class; needs two classes or more."""
    classes, index, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    if len(classes) < 2:
        raise FreezetuneError(
            f"scoring needs examples of at least 2 classes in the sample, got only label {classes.tolist()}"
        )
    return index, counts


def _normalise(values: list[float]) -> list[float]:
    top = max((abs(v) for v in values if math.isfinite(v)), default=0.0)
    if top == 0:
        return [0.0 for _ in values]
    return [v / top if math.isfinite(v) else math.copysign(1.0, v) for v in values]


def _timed(name: str, fn: Callable[[], LayerScores]) -> LayerScores:
    start = time.perf_counter()
    result = fn()
    result.seconds = time.perf_counter() - start
    result.scorer = name
    return result


# ---------------------------------------------------------------------- semantic
def semantic_deviation(x: torch.Tensor, labels: torch.Tensor) -> tuple[float, float, float]:
    """(D, temperature s, accuracy) of a leave-one-out nearest-centroid readout of ``x``.

    Features are z-scored; p(c | x_i) = softmax_c(s * cos(x_i, mu_c) + log pi_c), where mu_c is
    the mean of class c without x_i itself (leave-one-out) and pi_c the class frequency. D is
    the mean cross-entropy at the best single temperature s >= 0 (CE is convex in s), so
    0 <= D <= H(pi): D = H(pi) means the readout knows nothing beyond the class frequencies.
    Examples that are alone in their class have no leave-one-out centroid and are skipped.
    """
    y, counts = _classes(labels)
    z = _standardise(x.double())
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


def score_semantic(model, batches, *, layers: LayerMap | None = None,
                   max_samples: int | None = DEFAULT_SAMPLES) -> LayerScores:
    """Forward only. Block b's score is how far it falls behind an equal share of the reduction
    of the semantic deviation D from boundary 0 to L: (D_{b+1} - V_{b+1}) - (D_b - V_b), where
    V is the virtual (linear) trace from D_0 to D_L; normalised by the largest magnitude."""

    def run() -> LayerScores:
        layers_ = layers or LayerMap.from_model(model)
        with _untouched(model, trainable=False):
            states, labels, count = _pooled_states(model, layers_, batches, max_samples)
        readouts = [semantic_deviation(x, labels) for x in states]
        trace = [r[0] for r in readouts]
        n = len(trace) - 1
        virtual = [trace[0] + (trace[n] - trace[0]) * l / n for l in range(n + 1)]
        gap = [d - v for d, v in zip(trace, virtual)]
        shortfall = [gap[b + 1] - gap[b] for b in range(n)]
        return LayerScores(
            "semantic", _normalise(shortfall), raw=shortfall, boundary_trace=trace,
            trace_name="semantic deviation D_l (nats)", samples=len(labels), batches=count,
            details={
                "virtual_trace": virtual,
                "temperature": [r[1] for r in readouts],
                "centroid_accuracy": [r[2] for r in readouts],
                "label_entropy": _entropy(labels),
            },
        )

    return _timed("semantic", run)


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
    y, counts = _classes(labels)
    z = _standardise(x.double())
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


def score_variability(model, batches, *, layers: LayerMap | None = None,
                      max_samples: int | None = DEFAULT_SAMPLES) -> LayerScores:
    """Forward only. Block b's score is log NC1_{b+1} - log NC1_b: positive when the block makes
    the classes *less* separable (the representation drifts from the task), normalised by the
    largest magnitude. The most task-ready boundary (lowest NC1) is in ``details``."""

    def run() -> LayerScores:
        layers_ = layers or LayerMap.from_model(model)
        with _untouched(model, trainable=False):
            states, labels, count = _pooled_states(model, layers_, batches, max_samples)
        trace = [nc1(x, labels) for x in states]
        logs = [math.log(max(v, 1e-300)) for v in trace]
        steps = [logs[b + 1] - logs[b] for b in range(len(trace) - 1)]
        return LayerScores(
            "variability", _normalise(steps), raw=steps, boundary_trace=trace,
            trace_name="within/between variability NC1_l", samples=len(labels), batches=count,
            details={"most_task_ready_boundary": int(np.argmin(trace))},
        )

    return _timed("variability", run)


# ---------------------------------------------------------------------- gradient scorers
@dataclass
class _GradStats:
    names: list[str]
    numel: dict[str, int]
    weight_norm: dict[str, float]
    sq: dict[str, list[float]]  # per tensor: squared gradient norm of every batch
    sizes: list[int]  # rows per batch
    total: dict[str, torch.Tensor] | None  # per tensor: sum of the batch gradients (for snr)


def _gradient_stats(model, batches, max_samples, *, keep_sum: bool, max_batches: int | None) -> _GradStats:
    """One forward + backward per batch, every parameter trainable, eval mode; ``.grad`` untouched.

    Gradients come from ``torch.autograd.grad`` (nothing accumulates into ``.grad``); the loss is
    the mean cross-entropy of the classifier over the batch.
    """
    named = list(model.named_parameters())
    names = [n for n, _ in named]
    stats = _GradStats(
        names, {n: p.numel() for n, p in named},
        {n: float(p.detach().double().norm()) for n, p in named},
        {n: [] for n in names}, [], {} if keep_sum else None,
    )
    device = _device(model)
    with _untouched(model, trainable=True):
        for index, batch in enumerate(_take(batches, max_samples)):
            if max_batches is not None and index >= max_batches:
                break
            labels = torch.as_tensor(batch["labels"]).long().to(device)
            loss = F.cross_entropy(model(**_inputs(batch, device)), labels)
            grads = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True)
            stats.sizes.append(len(labels))
            for name, grad in zip(names, grads):
                if grad is None:
                    stats.sq[name].append(0.0)
                    continue
                stats.sq[name].append(float(grad.detach().double().pow(2).sum()))
                if stats.total is not None:
                    total = stats.total.get(name)
                    stats.total[name] = grad.detach().double() if total is None else total + grad.detach()
    return stats


def _tensor_normalise(values: dict[str, float], layers: LayerMap) -> dict[str, float]:
    """Divide by the largest *block* tensor's score (a fresh head's would dwarf every block)."""
    block_names = layers.block_of_tensor()
    top = max((v for n, v in values.items() if n in block_names and math.isfinite(v)), default=0.0)
    return {n: (v / top if top > 0 else 0.0) for n, v in values.items()}


def _from_gradients(name: str, model, batches, layers, max_samples, max_batches, *, keep_sum: bool,
                    measure: Callable[[_GradStats], Callable[[list[str]], float]]) -> LayerScores:
    """A gradient scorer: ``measure(stats)`` maps a list of tensor names to a value; applied per
    block (raw scores, normalised by the max) and per tensor (``tensor_scores``)."""

    def run() -> LayerScores:
        layers_ = layers or LayerMap.from_model(model)
        stats = _gradient_stats(model, batches, max_samples, keep_sum=keep_sum, max_batches=max_batches)
        value = measure(stats)
        raw = [value(layers_.units[block_unit(i)]) for i in range(layers_.num_blocks)]
        tensors = _tensor_normalise({n: value([n]) for n in stats.names}, layers_)
        return LayerScores(name, _normalise(raw), raw=raw, tensor_scores=tensors,
                           samples=sum(stats.sizes), batches=len(stats.sizes))

    return _timed(name, run)


def score_gradient(model, batches, *, layers: LayerMap | None = None,
                   max_samples: int | None = DEFAULT_SAMPLES, max_batches: int | None = None) -> LayerScores:
    """Relative gradient norm ‖g_b‖ / ‖θ_b‖ of each block, averaged over batches, / the max."""

    def measure(st: _GradStats) -> Callable[[list[str]], float]:
        def rgn(names: list[str]) -> float:
            weight = math.sqrt(sum(st.weight_norm[n] ** 2 for n in names))
            weight = max(weight, 1e-3 * math.sqrt(sum(st.numel[n] for n in names)))  # zero-init tensors
            per_batch = [math.sqrt(sum(st.sq[n][b] for n in names)) for b in range(len(st.sizes))]
            return sum(per_batch) / len(per_batch) / weight

        return rgn

    return _from_gradients("gradient", model, batches, layers, max_samples, max_batches, keep_sum=False,
                           measure=measure)


def score_snr(model, batches, *, layers: LayerMap | None = None,
              max_samples: int | None = DEFAULT_SAMPLES, max_batches: int | None = None) -> LayerScores:
    """Gradient signal-to-noise per block: ‖mean g‖ / sqrt(sum_b ‖g_b - mean g‖² / (B-1)), / the max."""

    def measure(st: _GradStats) -> Callable[[list[str]], float]:
        count = len(st.sizes)
        if count < 2:
            raise FreezetuneError(f"snr needs at least 2 batches to measure gradient noise, got {count}")
        mean_sq = {n: float((t / count).pow(2).sum()) for n, t in st.total.items()}

        def snr(names: list[str]) -> float:
            signal = sum(mean_sq.get(n, 0.0) for n in names)
            noise = (sum(sum(st.sq[n]) for n in names) - count * signal) / (count - 1)
            return math.sqrt(signal / max(noise, 1e-30)) if signal > 0 else 0.0

        return snr

    return _from_gradients("snr", model, batches, layers, max_samples, max_batches, keep_sum=True, measure=measure)


def score_fisher(model, batches, *, layers: LayerMap | None = None,
                 max_samples: int | None = DEFAULT_SAMPLES, max_batches: int | None = None) -> LayerScores:
    """Diagonal empirical Fisher per parameter (mean over batches of n_b · g_b²), averaged over
    each block's parameters, / the max."""

    def measure(st: _GradStats) -> Callable[[list[str]], float]:
        rows = sum(st.sizes)

        def fisher(names: list[str]) -> float:
            total = sum(size * st.sq[n][b] for n in names for b, size in enumerate(st.sizes))
            return total / rows / max(1, sum(st.numel[n] for n in names))

        return fisher

    return _from_gradients("fisher", model, batches, layers, max_samples, max_batches, keep_sum=False,
                           measure=measure)


# ---------------------------------------------------------------------- registry
SCORERS: dict[str, Callable[..., LayerScores]] = {
    "semantic": score_semantic,
    "variability": score_variability,
    "gradient": score_gradient,
    "snr": score_snr,
    "fisher": score_fisher,
}


TENSOR_SCORERS = ("gradient", "snr", "fisher")  # those that also score every tensor


def score(model, batches, scorer: str, *, layers: LayerMap | None = None, **options) -> LayerScores:
    """Run the scorer named ``scorer`` (see ``SCORERS``) on a labelled sample."""
    fn = SCORERS.get(scorer)
    if fn is None:
        raise FreezetuneError(f"unknown scorer {scorer!r}; known: {', '.join(SCORERS)}")
    return fn(model, batches, layers=layers, **options)


def sample_batches(dataset, *, size: int = DEFAULT_SAMPLES, batch_size: int = 32, seed: int = 0,
                   pad_token_id: int = 0) -> list[dict]:
    """A seeded random sample of min(size, rows) examples of a tokenized dataset, as padded batches."""
    from freezetune.io.data import make_loader

    rows = len(dataset)
    if rows == 0:
        raise FreezetuneError("the scoring sample is empty: the data set has no rows")
    if "labels" not in getattr(dataset, "column_names", ["labels"]):
        raise FreezetuneError("scoring needs labelled examples: the data set has no 'labels' column")
    picked = np.sort(np.random.default_rng(seed).permutation(rows)[: min(size, rows)])
    subset = dataset.select(picked.tolist()) if hasattr(dataset, "select") else [dataset[int(i)] for i in picked]
    loader = make_loader(subset, batch_size=batch_size, shuffle=False, pad_token_id=pad_token_id)
    return [{k: v for k, v in batch.items() if k != "index"} for batch in loader]


# ---------------------------------------------------------------------- what scoring costs
def full_step_seconds(model, batches, *, steps: int = 3) -> float:
    """Seconds of one full fine-tuning forward + backward (dropout on, every tensor trained) on
    a batch of ``batches``: the median of ``steps`` after one warm-up. The optimizer step is left
    out, so a run estimated from it is a lower bound. The model is left untouched."""
    device = _device(model)
    params = list(model.parameters())
    pool = list(_take(batches, None))
    times = []
    with _untouched(model, trainable=True):
        model.train()
        for index in range(steps + 1):
            batch = pool[index % len(pool)]
            start = time.perf_counter()
            labels = torch.as_tensor(batch["labels"]).long().to(device)
            loss = F.cross_entropy(model(**_inputs(batch, device)), labels)
            torch.autograd.grad(loss, params, allow_unused=True)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if index:
                times.append(time.perf_counter() - start)
    return float(np.median(times))


def run_estimate(model, batches, *, rows: int, batch_size: int, epochs: int) -> dict[str, float]:
    """A full fine-tuning run of ``rows`` training rows, estimated from timed steps."""
    step_s = full_step_seconds(model, batches)
    steps = math.ceil(rows / batch_size) * epochs
    return {"step_s": step_s, "steps": steps, "epochs": epochs, "batch_size": batch_size, "run_s": step_s * steps}


# ---------------------------------------------------------------------- CLI glue
def add_score_parser(subparsers) -> Any:
    from freezetune.cli.main import add_dataclass_flags
    from freezetune.core.config import DataConfig, ModelConfig

    parser = subparsers.add_parser(
        "score", help="score every block (how much it is worth training) on a small labelled sample",
        description="Per-block scores, higher = more worth training; blocks are numbered from 0 at the input.",
    )
    parser.add_argument("--scorer", action="append", choices=[*SCORERS, "all"],
                        help="scorer to run; repeat for several, or 'all' (default: semantic)")
    parser.add_argument("--samples", type=int, default=DEFAULT_SAMPLES,
                        help=f"training rows to score on (default: {DEFAULT_SAMPLES})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample (default: 0)")
    parser.add_argument("--plot", default=None, metavar="PNG",
                        help="write a bar chart per scorer (NAME.png becomes NAME-<scorer>.png)")
    parser.add_argument("--json", default=None, metavar="FILE", help="write every result as JSON")
    parser.add_argument("--epochs", type=int, default=3,
                        help="epochs of the full fine-tuning run the scoring time is compared with (default: 3)")
    add_dataclass_flags(parser, DataConfig, "data")
    add_dataclass_flags(parser, ModelConfig, "model")
    parser.set_defaults(run=cmd_score)
    return parser


def cmd_score(args) -> int:
    import json

    from freezetune.cli.main import _pick
    from freezetune.core.config import DataConfig, ModelConfig
    from freezetune.core.model import load_classifier, load_tokenizer
    from freezetune.runs.run import RunSpec, load_data

    if args.epochs < 1:
        raise FreezetuneError(f"--epochs must be at least 1, got {args.epochs}")
    spec = RunSpec(data=_pick(args, DataConfig), model=_pick(args, ModelConfig)).resolved()
    tokenizer = load_tokenizer(spec.model.model, gguf_file=spec.model.gguf_file)
    data = load_data(spec, tokenizer)
    torch.manual_seed(args.seed)
    model = load_classifier(spec.model.model, len(data.label_names), pooling=spec.model.pooling,
                            gguf_file=spec.model.gguf_file)
    sample = sample_batches(data.train, size=args.samples, seed=args.seed, pad_token_id=tokenizer.pad_token_id or 0)
    estimate = run_estimate(model, sample, rows=len(data.train), batch_size=len(sample[0]["labels"]),
                            epochs=args.epochs)
    names = list(SCORERS) if "all" in (args.scorer or []) else list(dict.fromkeys(args.scorer or ["semantic"]))
    results = []
    for name in names:
        result = score(model, sample, name)
        result.details["share_of_full_run"] = result.seconds / estimate["run_s"]
        results.append(result)
        print(result.table())
        print(f"cost: {result.seconds:.1f} s = {result.details['share_of_full_run']:.1%} of one full fine-tuning run\n")
        if args.plot:
            target = Path(args.plot)
            many = len(names) > 1
            path = result.plot(target.with_name(f"{target.stem}-{name}{target.suffix or '.png'}") if many else target)
            print(f"plot: {path}")
    print(
        f"one full fine-tuning run here ~ {estimate['run_s']:.0f} s: {estimate['epochs']} epochs x "
        f"{estimate['steps'] // estimate['epochs']} steps of {estimate['batch_size']} rows x {estimate['step_s']:.3f} s "
        "(forward + backward timed on the sample; optimizer step not included)"
    )
    if args.json:
        payload = {"scores": [r.to_dict() for r in results], "full_run_estimate": estimate}
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
    return 0
