"""Generations from a causal-LM checkpoint for a table: prompts in, a ``generation`` column out.

The decoding itself (prompts encoded as in training, left-padded, greedy) belongs to the task
kind: tasks/generation.py, which the server shares.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from freezetune.core.atomic import atomic_write
from freezetune.core.causal_lm import CausalLM
from freezetune.core.errors import FreezetuneError
from freezetune.io.data import is_missing
from freezetune.io.lm_data import PromptFormat
from freezetune.io.tables import read_table
from freezetune.tasks.generation import generate

__all__ = ["generate", "generate_file"]  # generate: still importable from here

log = logging.getLogger("freezetune")


def generate_file(model: CausalLM, tokenizer, meta: dict, data_path: str | os.PathLike[str], *,
                  prompt_column: str | None, output_path: Path, encoding: str, batch_size: int,
                  max_length: int | None, max_new_tokens: int, progress: bool = True) -> Path:
    """Write ``data_path`` back as CSV with a ``generation`` column (rows without a prompt: empty)."""
    config = meta.get("config") or {}
    column = prompt_column or config.get("prompt_column") or config.get("text_column") or "prompt"
    frame = read_table(data_path, encoding=encoding)
    if column not in frame.columns:
        raise FreezetuneError(f"{data_path} has no column {column!r}; its columns are: "
                              f"{', '.join(map(str, frame.columns))} (choose with --prompt-column)")
    if "generation" in frame.columns:
        raise FreezetuneError(f"{data_path} already has a column 'generation'; rename it before predicting")
    fmt = PromptFormat.choose(tokenizer, config.get("chat_template", "auto"))
    present = [i for i, v in enumerate(frame[column].tolist()) if not is_missing(v)]
    if len(present) < len(frame):
        log.info("%d of %d rows have no prompt; their generations are left empty", len(frame) - len(present),
                 len(frame))
    tokens = generate(model, fmt, [str(frame[column].iloc[i]) for i in present], max_new_tokens=max_new_tokens,
                      max_length=max_length or config.get("max_length") or 128, batch_size=batch_size,
                      progress=progress)
    texts = [""] * len(frame)
    for i, row in zip(present, tokens):
        texts[i] = tokenizer.decode(row, skip_special_tokens=True).strip()
    result = frame.copy()
    result["generation"] = texts
    atomic_write(Path(output_path), lambda handle: result.to_csv(handle, index=False))
    return Path(output_path)
