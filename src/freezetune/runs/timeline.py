"""timeline.png: which units trained when, for runs whose plan changes (schedules).

Each row is a unit (embeddings, blocks 0..L-1 from the input, head); each column span is a
stretch of optimizer steps under one plan; the shade is the share of the unit's parameters
that trained (Half Fine-Tuning trains parts of blocks).
"""

from __future__ import annotations

from pathlib import Path

from freezetune.training.callbacks import Callback


class Timeline(Callback):
    def __init__(self, path: Path):
        self.path = path
        self.changes: list[tuple[int, dict[str, float]]] = []  # (first step, share trained per unit)
        self.units: list[str] = []

    def on_plan_change(self, tuner, old, new) -> None:
        params = dict(tuner.model.named_parameters())
        shares = {}
        for unit, names in tuner.layers.units.items():
            total = sum(params[n].numel() for n in names)
            trained = sum(p.numel() for n, p in params.items()
                          if p.requires_grad and (n in names or _adapter_of(n, names)))
            shares[unit] = min(1.0, trained / total) if total else 0.0
        self.units = list(tuner.layers.units)
        step = tuner.state.step if tuner.state is not None else 0
        if self.changes and self.changes[-1][0] == step:
            self.changes[-1] = (step, shares)
        else:
            self.changes.append((step, shares))

    def on_fit_end(self, tuner, result) -> None:
        if len(self.changes) > 1:  # a fixed plan needs no picture
            self.draw(result.costs["steps"])

    def draw(self, total_steps: int) -> Path:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure  # no pyplot: no global backend state

        figure = Figure(figsize=(7.0, 0.9 + 0.28 * len(self.units)))
        FigureCanvasAgg(figure)
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
        figure.tight_layout()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(self.path, format="png", dpi=100)
        return self.path


def _adapter_of(name: str, unit_names: list[str]) -> bool:
    """LoRA adapter tensors belong to the unit of the layer they adapt."""
    if "lora_" not in name:
        return False
    module = name.split(".lora_", 1)[0]
    return any(n.startswith(module + ".") for n in unit_names)
