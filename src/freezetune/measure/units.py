"""Numbers as people read them: sizes in MiB / GiB (KiB below 1 MiB), times in s / min / h, counts as whole numbers.

Every table, log line and results file a user reads formats through these, so a size never
shows as raw bytes, a time never as a bare float and a parameter count never as ``770.0``.
``format_table`` (metrics.py) takes their names as column specs: ``"bytes"``, ``"duration"``,
``"count"``.
"""

from __future__ import annotations


def format_bytes(n: float) -> str:
    """``1.07 GiB`` from 1 GiB up, else MiB: ``812 MiB``, ``12.3 MiB``, ``1.25 MiB``.

    Below 1 MiB (a head-only checkpoint) KiB, so that small sizes still differ: ``4.4 KiB``.
    """
    if n >= 2**30:
        return f"{n / 2**30:.2f} GiB"
    mib = n / 2**20
    if mib >= 100:
        return f"{mib:.0f} MiB"
    if mib >= 1:
        return f"{mib:.1f} MiB" if mib >= 10 else f"{mib:.2f} MiB"
    return f"{n / 2**10:.1f} KiB"


def format_duration(seconds: float) -> str:
    """``0.141 s``, ``2.35 s``, ``42.1 s``, ``3.4 min``, ``1.2 h``."""
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    if seconds >= 10:
        return f"{seconds:.1f} s"
    return f"{seconds:.2f} s" if seconds >= 1 else f"{seconds:.3f} s"


def format_count(n: float) -> str:
    """A count with thousands separators, rounded to a whole number: ``770,304`` (a mean of counts too)."""
    return f"{round(n):,}"


# Column specs format_table understands beyond Python's format() mini-language.
UNIT_FORMATS = {"bytes": format_bytes, "duration": format_duration, "count": format_count}
