"""Generations from a causal-LM checkpoint: prompts in, greedy continuations out.

Prompts are encoded exactly as in training (``PromptFormat``: the chat template when the run
used one), keep their last ``max_length`` tokens, and are padded on the left, so every row's
continuation starts right after its own last prompt token. Decoding is greedy and stops at
the end-of-sequence token or after ``max_new_tokens``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from freezetune.core.causal_lm import CausalLM
from freezetune.core.errors import FreezetuneError
from freezetune.core.helpers import atomic_write, pick_device
from freezetune.io.data import is_missing
from freezetune.io.lm_data import PromptFormat
from freezetune.io.tables import read_table

log = logging.getLogger("freezetune")


def left_padded(rows: list[list[int]], pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.tensor([[pad_token_id] * (width - len(r)) + r for r in rows], dtype=torch.long)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], dtype=torch.long)
    return ids, mask


def generate(model: CausalLM, fmt: PromptFormat, prompts: list[str], *, max_new_tokens: int = 32,
             max_length: int = 128, batch_size: int = 16, progress: bool = False) -> list[list[int]]:
    """The new tokens of each prompt's greedy continuation (without padding or the end token)."""
    from tqdm.auto import tqdm

    stops = fmt.stop_ids  # EOS, and the chat template's end of turn when it differs
    pad = fmt.tokenizer.pad_token_id
    pad = pad if pad is not None else (stops[0] if stops else 0)  # never attended: any id does
    device = pick_device()
    model.to(device).eval()
    encoded = [ids[-max_length:] for ids in fmt.prompts(prompts)]
    out: list[list[int]] = []
    for start in tqdm(range(0, len(encoded), batch_size), desc="generate", disable=not progress, leave=False):
        ids, mask = left_padded(encoded[start:start + batch_size], pad)
        new = model.generate(ids.to(device), mask.to(device), max_new_tokens=max_new_tokens,
                             eos_token_id=stops or None, pad_token_id=pad)
        for row in new.tolist():
            ends = [row.index(t) for t in stops if t in row]
            out.append(row[: min(ends)] if ends else row)
    return out


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
