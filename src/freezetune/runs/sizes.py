"""Learning curves: the same sweep at several training sizes (``compare --train-sizes 100,1000,all``).

Each size is an ordinary sweep on a stratified sample of that many training rows, in
``OUTPUT/rows-<N>/`` with its own results; all sizes share one run store, so a size that was
already trained is reused. The combined rows, tagged with their ``train_size``, go to
``OUTPUT/results.{txt,csv,json}`` for the report's learning curves.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from freezetune.core.errors import FreezetuneError
from freezetune.runs.sweep import Sweep, run_sweep, write_results

log = logging.getLogger("freezetune")


def parse_sizes(text: str | None) -> list[int | None]:
    """'100,1000,all' -> [100, 1000, None] (None: every training row); smallest first."""
    if not text:
        return [None]
    sizes: list[int | None] = []
    for part in (p.strip() for p in str(text).split(",")):
        if part == "all":
            sizes.append(None)
            continue
        try:
            size = int(part.replace("_", ""))
        except ValueError:
            raise FreezetuneError(f"--train-sizes takes row counts and 'all', like 100,1000,all; got {part!r}") \
                from None
        if size < 2:
            raise FreezetuneError(f"--train-sizes: a training size must be at least 2 rows, got {size}")
        sizes.append(size)
    if len(set(sizes)) != len(sizes):
        raise FreezetuneError(f"--train-sizes lists a size twice: {text}")
    return sorted(sizes, key=lambda s: float("inf") if s is None else s)


def run_sizes(sweep: Sweep, sizes: list[int | None]) -> list[dict[str, Any]]:
    """Run ``sweep`` once per training size; return every plan's row at every size."""
    if sizes == [None]:
        return run_sweep(sweep)
    if sweep.base.data.max_train_rows is not None:
        raise FreezetuneError("give either --train-sizes or --max-train-rows, not both")
    out = Path(sweep.output)
    store = sweep.runs or str(out / "runs")
    rows = []
    for index, size in enumerate(sizes, 1):
        label = "all" if size is None else str(size)
        log.info("training size %d/%d: %s rows", index, len(sizes), label)
        data = replace(sweep.base.data, max_train_rows=size)
        part = replace(sweep, base=replace(sweep.base, data=data), output=str(out / f"rows-{label}"), runs=store)
        rows += [{**row, "train_size": size} for row in run_sweep(part)]
    write_results(out, rows, replace(sweep, runs=store))
    return rows
