"""Files written whole or not at all, and a full disk as one line."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from freezetune.core.errors import FreezetuneError


def atomic_write(target: str | os.PathLike[str], write: Callable[[IO], None], *, binary: bool = False) -> Path:
    """Call ``write(handle)`` on a temporary file, then rename it over ``target``.

    Checkpoints, states, metrics, configs, reports and plots go through here. Readers see the old file or the new one,
    never half of one; a write that fails or is interrupted (a signal, a full disk) leaves the
    old file untouched. The temporary file lives in the target's folder, so the rename stays on
    one filesystem (atomic). A full disk is one clear error, not a traceback.
    """
    target = Path(target)
    with disk_errors(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            mode = "wb" if binary else "w"
            with os.fdopen(fd, mode, **({} if binary else {"encoding": "utf-8", "newline": ""})) as handle:
                write(handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return target


def atomic_write_text(target: str | os.PathLike[str], text: str) -> Path:
    return atomic_write(target, lambda handle: handle.write(text))


def atomic_write_bytes(target: str | os.PathLike[str], data: bytes) -> Path:
    return atomic_write(target, lambda handle: handle.write(data), binary=True)


@contextlib.contextmanager
def disk_errors(target: Path) -> Iterator[None]:
    """A full disk or quota while writing ``target`` becomes one line that says what to do."""
    try:
        yield
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise FreezetuneError(
            f"cannot write {target}: no space left on device; free some space and run again "
            "(earlier files are intact; an interrupted training run continues with --resume)"
        ) from None
