"""SIGINT and SIGTERM during a fit: finish the step in progress, save, then stop.

A signal only sets a flag; the loop reads it after each optimizer step, saves a resumable state
at that step and raises :class:`~freezetune.core.errors.Interrupted`. Stopping between steps
means the saved state is never half an update. A second signal stops at once (a
``KeyboardInterrupt`` wherever the program is); the saved files stay whole, since every write
is atomic. The previous handlers come back when the fit ends.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class InterruptFlag:
    """Which signal asked training to stop (None: none yet)."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt  # asked twice: stop now
        self.signum = signum


@contextlib.contextmanager
def stop_between_steps() -> Iterator[InterruptFlag]:
    """Handlers that set the returned flag while the block runs (outside the main thread: none)."""
    flag = InterruptFlag()
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield flag
        return
    previous = {signum: signal.signal(signum, flag._handle) for signum in SIGNALS}
    try:
        yield flag
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)  # None: set outside Python
