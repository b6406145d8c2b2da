"""Logs held back while input is checked, so an error line stays the only output."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator


class _Holder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def held_logs(logger: logging.Logger) -> Iterator[None]:
    """Hold what ``logger`` logs inside the block; log it when the block ends well, drop it on an error.

    Reading and checking input logs notes (an encoding guessed, rows dropped, a rare class); when
    the input then proves bad, the error line must be the only output.
    """
    holder, propagate = _Holder(), logger.propagate
    logger.addHandler(holder)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(holder)
        logger.propagate = propagate
    for record in holder.records:  # reached only when the block raised nothing
        logger.handle(record)
