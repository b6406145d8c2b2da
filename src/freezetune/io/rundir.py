"""The run output folder: config, metrics log, final metrics, checkpoints, plots.

``RunDir.create`` only validates. The folder is made, locked against a second writer
(lock.py), and an ``--overwrite`` clean-up is done, on the first write. So a run that fails
before it starts (a bad column name, a model that can't be mapped) leaves nothing half-written
and deletes no earlier run.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import yaml

from freezetune.core.atomic import atomic_write_text, disk_errors
from freezetune.core.errors import FreezetuneError
from freezetune.io.lock import LOCK_FILE, RunLock, check_unlocked

# Files whose presence marks a folder as a freezetune run.
RUN_MARKERS: tuple[str, ...] = ("config.yaml", "metrics.json", "metrics.jsonl")
# Everything freezetune writes into a run folder. --overwrite removes these and nothing
# else, so a user who points --output at a folder with their own files keeps them.
OWNED_FILES: tuple[str, ...] = (*RUN_MARKERS, "plan.json", "scores.json", "selection.txt", "race.json",
                                "curves.png", "timeline.png")
OWNED_DIRS: tuple[str, ...] = ("checkpoint", "resume", "best", "plots", "tensorboard")


def is_run(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a folder holding a freezetune run."""
    path = Path(path)
    return path.is_dir() and any((path / name).is_file() for name in RUN_MARKERS)


class RunDir:
    """One run's output folder. Build it with ``RunDir.create(path, overwrite)``."""

    def __init__(self, path: Path, clean_on_first_write: bool = False, *, lock: bool = False,
                 must_be_new: bool = False) -> None:
        self.path = path
        self._clean_pending = clean_on_first_write
        self._lock = RunLock(path) if lock else None  # taken at the first write, dropped by close()
        self._must_be_new = must_be_new  # refuse a run that another process finished meanwhile
        self._ready = False
        self._t0 = time.monotonic()

    @classmethod
    def create(cls, path: str | os.PathLike[str], overwrite: bool = False) -> RunDir:
        """Check that ``path`` may receive a run; create nothing yet (see module docstring).

        Refused unless ``overwrite``: a folder that already holds a run, and a non-empty
        folder that is not a run (the user's own files). Always refused: a path that is a
        file, or whose nearest existing ancestor is not a folder.
        """
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise FreezetuneError(
                f"{path} is a file, not a folder; choose another --output"
            )
        if path.is_dir():
            check_unlocked(path)  # another process writing there comes first: it names its PID
            if is_run(path) and not overwrite:
                raise FreezetuneError(
                    f"{path} already holds a run; pass --overwrite to replace it "
                    "or choose another --output"
                )
            if any(p.name != LOCK_FILE for p in path.iterdir()) and not overwrite:
                raise FreezetuneError(
                    f"{path} is a non-empty folder that is not a freezetune run; choose "
                    "another --output, or pass --overwrite to write into it (your files are kept)"
                )
        else:
            _check_parent(path)
        return cls(path, clean_on_first_write=overwrite, lock=True, must_be_new=not overwrite)

    def file(self, name: str) -> Path:
        """Path of ``name`` inside the run folder (``name`` may have subfolders)."""
        rel = Path(name)
        if rel.is_absolute() or ".." in rel.parts:
            raise ValueError(f"run file name must be relative and stay inside the run: {name!r}")
        return self.path / rel

    def write_text(self, name: str, text: str) -> Path:
        """Write ``text`` to ``name`` atomically: readers see the old file or the new one."""
        target = self.file(name)
        self._ensure()
        return atomic_write_text(target, text)

    def write_json(self, name: str, obj: Any) -> Path:
        return self.write_text(name, json.dumps(obj, indent=2, default=_to_jsonable) + "\n")

    def write_yaml(self, name: str, obj: Any) -> Path:
        return self.write_text(name, yaml.safe_dump(obj, sort_keys=False, allow_unicode=True))

    def append_metrics(self, record: dict[str, Any]) -> None:
        """Append ``record`` as one line of metrics.jsonl, with ``time`` (s since start).

        Each line is flushed, so a crash or kill loses at most the line being written and
        ``tail -f`` shows progress live.
        """
        self._ensure()
        line = json.dumps(
            {"time": round(time.monotonic() - self._t0, 3), **record}, default=_to_jsonable
        )
        # Appended, not rewritten atomically: a torn last line is all a crash can cost.
        with disk_errors(self.file("metrics.jsonl")), open(self.file("metrics.jsonl"), "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()

    def _ensure(self) -> None:
        """Make the folder (and do a pending --overwrite clean-up) before the first write."""
        if self._ready:
            return
        with disk_errors(self.path):
            self.path.mkdir(parents=True, exist_ok=True)
        if self._lock is not None:
            self._lock.acquire()
            if self._must_be_new and is_run(self.path):
                self.close()
                raise FreezetuneError(f"{self.path} already holds a run; pass --overwrite to replace it or choose "
                                      "another --output")
        if self._clean_pending:
            _remove_owned(self.path)
            self._clean_pending = False
        self._ready = True

    def close(self) -> None:
        """Let another process write here (the lock also goes when this process ends)."""
        if self._lock is not None:
            self._lock.release()

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"


def read_metrics(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """A finished run's ``metrics.json``; None when it is absent or unreadable (cut off, edited by hand)."""
    try:
        metrics = json.loads((Path(folder) / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):  # ValueError covers bad JSON and bad UTF-8
        return None
    return metrics if isinstance(metrics, dict) else None


def read_metrics_log(folder: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of ``folder/metrics.jsonl`` (none when it is absent); a line cut off by a kill is skipped."""
    path = Path(folder) / "metrics.jsonl"
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def _check_parent(path: Path) -> None:
    """Fail now, not at the first write, when the folder could never be made."""
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise FreezetuneError(
            f"cannot create {path}: {ancestor} is a file; choose another --output"
        )
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise FreezetuneError(
            f"cannot create {path}: {ancestor} is not writable; choose another --output"
        )


def _remove_owned(path: Path) -> None:
    """Delete what an earlier run wrote (the OWNED_* names); leave everything else."""
    for name in OWNED_FILES + OWNED_DIRS:
        target = path / name
        # A symlink is removed as a link: never follow it into somebody else's folder.
        if target.is_symlink() or target.is_file():
            target.unlink()
        elif target.is_dir():
            shutil.rmtree(target)


def _to_jsonable(obj: Any) -> Any:
    """json.dumps fallback for values that metrics often are: numpy/torch scalars, paths."""
    if hasattr(obj, "item") and callable(obj.item):
        return obj.item()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")
