"""Predictions from a compact checkpoint: a table in, the same table plus labels and probabilities out.

``predict_file`` reads CSV / TSV / JSONL / Parquet with ``tables.read_table``, tokenizes with the
checkpoint's tokenizer (``max_length`` from the training config unless given), runs the model
in eval mode and writes a CSV: the original columns, ``prediction`` (the label name) and one
``prob_<label>`` column per label. Rows with no text get empty predictions.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from freezetune.core.atomic import atomic_write
from freezetune.core.config import CAUSAL_LM
from freezetune.core.device import model_inputs, pick_device
from freezetune.core.errors import FreezetuneError, did_you_mean
from freezetune.core.logs import held_logs
from freezetune.io.checkpoint import load_checkpoint, read_meta
from freezetune.io.data import is_missing
from freezetune.io.tables import read_table
from freezetune.runs.generate import generate_file

log = logging.getLogger("freezetune")

DEFAULT_MAX_LENGTH = 128


def predict_file(
    checkpoint_folder: str | os.PathLike[str],
    data_path: str | os.PathLike[str],
    *,
    text_column: str | None = None,
    text_pair_column: str | None = None,
    output_path: str | os.PathLike[str],
    encoding: str = "auto",
    batch_size: int = 64,
    max_length: int | None = None,
    overwrite: bool = False,
    base_path: str | None = None,
    prompt_column: str | None = None,
    max_new_tokens: int = 32,
) -> Path:
    """Write predictions for every row of ``data_path`` to ``output_path`` (CSV); return its path.

    ``text_column`` / ``text_pair_column`` default to the columns the model was trained on
    (``text`` when unknown). An existing output file is refused unless ``overwrite``. A causal-LM
    checkpoint generates instead (generate.py): ``prompt_column`` in, a ``generation`` column out.
    """
    output = Path(output_path)
    if output.is_dir():
        raise FreezetuneError(f"{output} is a folder; give a file name for --output")
    if output.exists() and not overwrite:
        raise FreezetuneError(f"{output} already exists; pass --overwrite to replace it or choose another --output")
    if batch_size < 1:
        raise FreezetuneError(f"--batch-size must be at least 1, got {batch_size}")
    if max_new_tokens < 1:
        raise FreezetuneError(f"--max-new-tokens must be at least 1, got {max_new_tokens}")
    _, meta = read_meta(checkpoint_folder)  # cheap checks before the model loads
    if meta.get("task") == CAUSAL_LM:
        read_table(data_path, encoding=encoding)  # a bad file fails before the model loads
        model, tokenizer, meta = load_checkpoint(checkpoint_folder, base_path=base_path)
        return generate_file(model, tokenizer, meta, data_path, prompt_column=prompt_column, output_path=output,
                             encoding=encoding, batch_size=batch_size, max_length=max_length,
                             max_new_tokens=max_new_tokens)
    config = meta.get("config") or {}
    text_column = text_column or config.get("text_column") or "text"
    if text_pair_column is None:
        text_pair_column = config.get("text_pair_column")
    max_length = max_length or config.get("max_length") or DEFAULT_MAX_LENGTH
    columns = [text_column] + ([text_pair_column] if text_pair_column else [])
    with held_logs(log):  # a note on the encoding waits until the columns proved good
        frame = read_table(data_path, encoding=encoding)
        for column in columns:
            if column not in frame.columns:
                raise FreezetuneError(
                    f"{data_path} has no column {column!r}{did_you_mean(column, frame.columns)}; its columns are: "
                    f"{', '.join(map(str, frame.columns))} (choose with --text-column / --text-pair-column)"
                )
    labels = meta["label_names"]
    added = ["prediction"] + [f"prob_{name}" for name in labels]
    clash = [c for c in added if c in frame.columns]
    if clash:
        raise FreezetuneError(f"{data_path} already has a column {clash[0]!r}; rename it before predicting")

    model, tokenizer, meta = load_checkpoint(checkpoint_folder, base_path=base_path)
    device = pick_device()
    model.to(device).eval()
    rows = [i for i in range(len(frame)) if not any(is_missing(frame[c].iloc[i]) for c in columns)]
    if len(rows) < len(frame):
        log.info("%d of %d rows have no text; their predictions are left empty", len(frame) - len(rows), len(frame))
    probabilities = torch.full((len(frame), len(labels)), float("nan"))
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            texts = [str(frame[text_column].iloc[i]) for i in chunk]
            pairs = [str(frame[text_pair_column].iloc[i]) for i in chunk] if text_pair_column else None
            encoded = tokenizer(texts, pairs, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
            logits = model(**model_inputs(encoded, device)).float()
            probabilities[chunk] = torch.softmax(logits, dim=-1).cpu()

    result = frame.copy()
    predicted = probabilities.argmax(-1).tolist()
    has = ~torch.isnan(probabilities[:, 0])
    result["prediction"] = [labels[p] if ok else "" for p, ok in zip(predicted, has.tolist())]
    for j, name in enumerate(labels):
        result[f"prob_{name}"] = probabilities[:, j].numpy()
    atomic_write(output, lambda handle: result.to_csv(handle, index=False))
    return output
