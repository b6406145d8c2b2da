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
            error = _busy(self.folder, handle)
            handle.close()
            raise error from None
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
    """Fail now when another process writes ``folder``; take nothing, write nothing.

    A shared lock conflicts only with a writer's exclusive one, so the ranks of one
    data-parallel run may all check at once without finding each other.
    """
    path = Path(folder) / LOCK_FILE
    if fcntl is None or not path.is_file():
        return
    with open(path, encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _busy(folder, handle) from None


def _busy(folder, handle) -> FreezetuneError:
    """The error naming the process that holds the lock (its PID is the file's content)."""
    handle.seek(0)
    holder = handle.read().strip() or "unknown"
    return FreezetuneError(f"{folder} is being written by another freezetune process (PID {holder}); wait for it "
                           "to finish, stop it, or choose another --output")
