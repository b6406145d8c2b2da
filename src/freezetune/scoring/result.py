"""LayerScores: what a scorer measured, per block (and per tensor), with a table and a plot."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from freezetune.core.figures import new_figure, save_png
from freezetune.measure.units import format_duration


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
    # gradient scorers: per block, the gradient noise scale in rows (None: no signal above the noise)
    noise_scale: list[float | None] | None = None

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
            f"scorer: {self.scorer} ({self.samples} examples, {self.batches} batches, "
            f"{format_duration(self.seconds)}); "
            "blocks from 0 at the input; higher = more worth training",
            f"{'block':>5} {'score':>7} {'raw':>11}" + (f" {'noise scale':>11}" if self.noise_scale else ""),
        ]
        for i, value in enumerate(self.scores):
            bar = ("+" if value >= 0 else "-") * round(abs(value) * 20)
            raw = f"{self.raw[i]:>11.4g}" if i < len(self.raw) else " " * 11
            if self.noise_scale:
                scale = self.noise_scale[i]
                raw += f" {scale:>11,.0f}" if scale is not None else f" {'no signal':>11}"
            lines.append(f"{i:>5} {value:>+7.3f} {raw}  {bar}")
        if self.noise_scale:
            lines.append("noise scale: the training rows a block's gradient needs before its signal beats the "
                         "sampling noise (auto trains only blocks with fewer)")
        if self.boundary_trace is not None:
            lines.append(f"{self.trace_name or 'trace'} at boundaries 0..{len(self.boundary_trace) - 1}:")
            lines.append("  " + "  ".join(f"{v:.4g}" for v in self.boundary_trace))
            virtual = self.details.get("virtual_trace")
            if virtual is not None:
                lines.append("  virtual: " + "  ".join(f"{v:.4g}" for v in virtual))
        return "\n".join(lines)

    def plot(self, path: str | Path) -> Path:
        """A PNG: scores per block as bars, and the boundary trace (factual and virtual) below."""
        rows = 2 if self.boundary_trace is not None else 1
        figure = new_figure(6.4, 2.6 * rows + 0.4)
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
        return save_png(figure, path)
