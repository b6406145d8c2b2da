"""The report a user reads after ``compare``: recommendation, tables and plots from finished runs."""

from freezetune.report.build import ReportFiles, build_report

__all__ = ["ReportFiles", "build_report"]
