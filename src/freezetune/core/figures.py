"""The PNGs freezetune draws: matplotlib's object API on the Agg canvas, saved atomically.

No pyplot: no global backend state, no display needed, safe in threads and sweeps.
"""

from __future__ import annotations

import os
from pathlib import Path

from freezetune.core.atomic import atomic_write


def new_figure(width: float, height: float):
    """An empty figure of ``width`` x ``height`` inches, ready for ``figure.subplots(...)``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure


def save_png(figure, path: str | os.PathLike[str]) -> Path:
    """Lay the figure out and write it as a PNG (100 dpi), atomically."""
    figure.tight_layout()
    return atomic_write(Path(path), lambda handle: figure.savefig(handle, format="png", dpi=100), binary=True)
