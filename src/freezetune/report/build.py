"""``build_report``: a finished comparison folder -> report.html, report.md and plots/*.png."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from freezetune.core.atomic import atomic_write_text
from freezetune.report.document import build_document
from freezetune.report.load import load_comparison
from freezetune.report.render import to_html, to_markdown

log = logging.getLogger("freezetune")


@dataclass
class ReportFiles:
    html: Path
    markdown: Path
    plots: list[Path]


def build_report(folder: str | Path) -> ReportFiles:
    """Write the report of the comparison in ``folder`` from its finished runs; train nothing."""
    folder = Path(folder)
    comparison = load_comparison(folder)
    log.info("writing the report of %d plans ...", len(comparison.plans))
    blocks = build_document(comparison, folder / "plots")
    html_file = atomic_write_text(folder / "report.html", to_html(blocks, f"freezetune report: {folder.name}"))
    markdown_file = atomic_write_text(folder / "report.md", to_markdown(blocks, folder))
    plots = sorted({b.path for b in blocks if b.kind == "image" and b.path is not None})
    return ReportFiles(html_file, markdown_file, plots)
