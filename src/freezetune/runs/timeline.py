"""timeline.png: which units trained when, for runs whose plan changes (schedules).

Each row is a unit (embeddings, blocks 0..L-1 from the input, head); each column span is a
stretch of optimizer steps under one plan; the shade is the share of the unit's parameters
that trained (Half Fine-Tuning trains parts of blocks).
"""

from __future__ import annotations

from pathlib import Path

from freezetune.core.figures import new_figure, save_png
from freezetune.training.callbacks import Callback


class Timeline(Callback):
    def __init__(self, path: Path):
        self.path = path
        self.changes: list[tuple[int, dict[str, float]]] = []  # (first step, share trained per unit)
        self.units: list[str] = []

    def on_plan_change(self, tuner, old, new) -> None:
        layers = tuner.layers
        trained = dict.fromkeys(layers.units, 0)
        for name, param in tuner.model.named_parameters():
            if param.requires_grad:
                trained[layers.unit_for(name)] += param.numel()
        totals = layers.counts()
        shares = {unit: min(1.0, trained[unit] / totals[unit]) if totals[unit] else 0.0 for unit in layers.units}
        self.units = list(layers.units)
        step = tuner.state.step if tuner.state is not None else 0
        if self.changes and self.changes[-1][0] == step:
            self.changes[-1] = (step, shares)
        else:
            self.changes.append((step, shares))

    def on_fit_end(self, tuner, result) -> None:
        if len(self.changes) > 1:  # a fixed plan needs no picture
            self.draw(result.costs["steps"])

    def draw(self, total_steps: int) -> Path:
        figure = new_figure(7.0, 0.9 + 0.28 * len(self.units))
        axes = figure.subplots()
        ends = [start for start, _ in self.changes[1:]] + [max(total_steps, self.changes[-1][0] + 1)]
        for (start, shares), end in zip(self.changes, ends):
            for row, unit in enumerate(self.units):
                if shares.get(unit, 0) > 0:
                    shade = 0.25 + 0.75 * shares[unit]
                    axes.barh(row, end - start, left=start, height=0.8, color="tab:blue", alpha=shade, linewidth=0)
        axes.set_yticks(range(len(self.units)), [u.replace("block.", "block ") for u in self.units])
        axes.set(xlabel="optimizer step", title="what trained when (shade: share of the unit's parameters)",
                 xlim=(0, ends[-1]), ylim=(-0.6, len(self.units) - 0.4))
        return save_png(figure, self.path)

