"""One writer per run folder: an OS file lock on ``RUN/.lock`` with the holder's PID inside.

``flock`` belongs to the open file, so the operating system drops it when the process ends,
however it ends: a lock file left behind by a killed run never blocks ``--resume``. The PID is
only there to name the holder in the error. The lock file is written in place, not through the
atomic rename every other file takes: a rename would swap the locked file for an unlocked one.
"""

from __future__ import annotations

import os
from pathlib import Path

from freezetune.core.errors import FreezetuneError

try:
    import fcntl
except ImportError:  # Windows: no flock; runs are not locked there
    fcntl = None

LOCK_FILE = ".lock"


class RunLock:
    """``RunLock(folder).acquire()`` holds the folder until ``release()`` or the process ends."""

    def __init__(self, folder: str | os.PathLike[str]):
        self.folder = Path(folder)
        self._handle = None

    def acquire(self) -> RunLock:
        if fcntl is None or self._handle is not None:
            return self
        handle = open(self.folder / LOCK_FILE, "a+", encoding="utf-8")  # noqa: SIM115 (held open on purpose)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise FreezetuneError(
                f"{self.folder} is being written by another freezetune process (PID {holder}); wait for it to "
                "finish, stop it, or choose another --output"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle = handle
        return self

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()  # closing drops the lock
            self._handle = None


def check_unlocked(folder: str | os.PathLike[str]) -> None:
    """Fail now when another process writes ``folder``; take nothing."""
    if (Path(folder) / LOCK_FILE).is_file():
        RunLock(folder).acquire().release()
