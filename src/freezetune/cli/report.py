"""``freezetune report``: rebuild a comparison's report from its finished runs, without training."""

from __future__ import annotations

import freezetune


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "report",
        help="write report.html, report.md and plots/ for a finished comparison (no training)",
        description="Rebuild the report of a `freezetune compare` folder from its finished runs: recommendation, "
                    "tables and plots. Nothing is trained.",
    )
    parser.add_argument("folder", metavar="COMPARE_FOLDER", help="the --output folder of `freezetune compare`")
    parser.set_defaults(run=run)


def run(args) -> int:
    files = freezetune.report.build_report(args.folder)
    print(f"report: {files.html}")
    print(f"summary: {files.markdown}")
    return 0
