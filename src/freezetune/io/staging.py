"""Whole folders written atomically: build next to the target, then move into place in one rename.

Checkpoints and exports are folders of several files; a reader must never see half of one,
and a failed write must leave nothing behind (and replace nothing it should not).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from freezetune.core.errors import FreezetuneError


def check_new_folder(target: Path, flag: str) -> None:
    """Refuse a file, a non-empty folder, or a folder that could never be made."""
    if target.exists():
        if not target.is_dir():
            raise FreezetuneError(f"{target} is a file; choose a new folder for {flag}")
        if any(target.iterdir()):
            raise FreezetuneError(
                f"{target} is not empty; choose a new or empty folder for {flag} (nothing is overwritten)"
            )
        return
    ancestor = target.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        raise FreezetuneError(f"cannot create {target}: {ancestor} is not a writable folder; choose another {flag}")


class Staging:
    """Write a folder next to its target, then move it into place in one rename.

    ``replace_marker``: a target holding this file (an earlier checkpoint) is replaced;
    any other target must be an empty folder (checked before anything was written).
    """

    def __init__(self, target: Path, *, replace_marker: str | None = None):
        self.target = target
        self.replace_marker = replace_marker

    def __enter__(self) -> Path:
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(dir=self.target.parent, prefix=f".{self.target.name}.tmp-"))
        return self.path

    def __exit__(self, kind, value, traceback) -> None:
        if kind is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            return
        old = None
        if self.target.exists():
            if self.replace_marker and (self.target / self.replace_marker).is_file():
                old = self.target.with_name(f".{self.target.name}.old-{os.getpid()}-{time.monotonic_ns()}")
                os.rename(self.target, old)
            else:
                self.target.rmdir()  # checked empty before anything was written
        os.rename(self.path, self.target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

