"""A run's local paths made absolute, so `--config RUN/config.yaml` repeats the run from any folder.

A path that names nothing on disk (a Hub model id, a typo the loader will report) stays as given.
"""

from __future__ import annotations

import os
from typing import Any

# Options of DataConfig and ModelConfig that name a local file or folder (--output is always made absolute).
PATH_OPTIONS = ("data", "eval_data", "test_data", "retention_data", "model")
SET_OPTIONS = ("extra_eval", "ood_set")  # NAME=PATH entries


def absolute(path: str | None) -> str | None:
    if path is None or not os.path.exists(os.path.expanduser(path)):
        return path
    return os.path.abspath(os.path.expanduser(path))


def absolute_sets(sets: Any) -> Any:
    """--extra-eval / --ood-set entries (NAME=PATH strings or a mapping) with absolute paths."""
    if isinstance(sets, dict):
        return {name: absolute(path) for name, path in sets.items()}
    if isinstance(sets, (list, tuple)):
        entries = (str(entry).partition("=") for entry in sets)
        return [f"{name}={absolute(path)}" if sep else name for name, sep, path in entries]
    return sets


def absolute_paths(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` (flat, as in config.yaml) with every local path absolute."""
    out = dict(options)
    out.update({k: absolute(out[k]) for k in PATH_OPTIONS if k in out})
    out.update({k: absolute_sets(out[k]) for k in SET_OPTIONS if k in out})
    return out
