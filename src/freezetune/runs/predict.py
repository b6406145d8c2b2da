"""Predictions from a compact checkpoint: a table in, the same table plus labels and probabilities out.

``predict_file`` reads CSV / TSV / JSONL / Parquet with ``data.read_table``, tokenizes with the
checkpoint's tokenizer (``max_length`` from the training config unless given), runs the model
in eval mode and writes a CSV: the original columns, ``prediction`` (the label name) and one
``prob_<label>`` column per label. Rows with no text get empty predictions.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from freezetune.core.errors import FreezetuneError

log = logging.getLogger("freezetune")

DEFAULT_MAX_LENGTH = 128
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _is_missing(value: Any) -> bool:
    try:
        return value is None or bool(value != value)  # NaN
    except (TypeError, ValueError):
        return False


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
) -> Path:
    """Write predictions for every row of ``data_path`` to ``output_path`` (CSV); return its path.

    ``text_column`` / ``text_pair_column`` default to the columns the model was trained on
    (``text`` when unknown). An existing output file is refused unless ``overwrite``.
    """
    from freezetune.io.checkpoint import load_checkpoint, read_meta
    from freezetune.io.data import read_table

    output = Path(output_path)
    if output.is_dir():
        raise FreezetuneError(f"{output} is a folder; give a file name for --output")
    if output.exists() and not overwrite:
        raise FreezetuneError(f"{output} already exists; pass --overwrite to replace it or choose another --output")
    if batch_size < 1:
        raise FreezetuneError(f"--batch-size must be at least 1, got {batch_size}")
    _, meta = read_meta(checkpoint_folder)  # cheap checks before the model loads
    config = meta.get("config") or {}
    text_column = text_column or config.get("text_column") or "text"
    if text_pair_column is None:
        text_pair_column = config.get("text_pair_column")
    max_length = max_length or config.get("max_length") or DEFAULT_MAX_LENGTH
    frame = read_table(data_path, encoding=encoding)
    columns = [text_column] + ([text_pair_column] if text_pair_column else [])
    for column in columns:
        if column not in frame.columns:
            raise FreezetuneError(
                f"{data_path} has no column {column!r}; its columns are: {', '.join(map(str, frame.columns))} "
                "(choose with --text-column / --text-pair-column)"
            )
    labels = meta["label_names"]
    added = ["prediction"] + [f"prob_{name}" for name in labels]
    clash = [c for c in added if c in frame.columns]
    if clash:
        raise FreezetuneError(f"{data_path} already has a column {clash[0]!r}; rename it before predicting")

    model, tokenizer, meta = load_checkpoint(checkpoint_folder, base_path=base_path)
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    model.to(device).eval()
    rows = [i for i in range(len(frame)) if not any(_is_missing(frame[c].iloc[i]) for c in columns)]
    if len(rows) < len(frame):
        log.info("%d of %d rows have no text; their predictions are left empty", len(frame) - len(rows), len(frame))
    probabilities = torch.full((len(frame), len(labels)), float("nan"))
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            texts = [str(frame[text_column].iloc[i]) for i in chunk]
            pairs = [str(frame[text_pair_column].iloc[i]) for i in chunk] if text_pair_column else None
            encoded = tokenizer(texts, pairs, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
            inputs = {k: encoded[k].to(device) for k in MODEL_INPUTS if k in encoded}
            logits = model(**inputs).float()
            probabilities[chunk] = torch.softmax(logits, dim=-1).cpu()

    result = frame.copy()
    predicted = probabilities.argmax(-1).tolist()
    has = ~torch.isnan(probabilities[:, 0])
    result["prediction"] = [labels[p] if ok else "" for p, ok in zip(predicted, has.tolist())]
    for j, name in enumerate(labels):
        result[f"prob_{name}"] = probabilities[:, j].numpy()
    _write_csv_atomic(result, output)
    return output


def _write_csv_atomic(frame, output: Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            frame.to_csv(handle, index=False)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, output)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------- CLI glue
def add_predict_parser(subparsers) -> Any:
    parser = subparsers.add_parser(
        "predict",
        help="label a file with a trained checkpoint",
        description=(
            "Read a CSV / TSV / JSONL / Parquet file and write it back as CSV with a `prediction` "
            "column (the label name) and one `prob_<label>` column per label."
        ),
    )
    parser.add_argument("--checkpoint", required=True, metavar="RUN_OR_CKPT",
                        help="checkpoint folder, or a run folder holding checkpoint/")
    parser.add_argument("--data", required=True, metavar="FILE",
                        help="file to label (CSV, TSV, JSONL, Parquet)")
    parser.add_argument("--text-column", default=None, metavar="NAME",
                        help="column holding the text (default: the one used in training, else text)")
    parser.add_argument("--text-pair-column", default=None, metavar="NAME",
                        help="second text column for sentence pairs (default: the one used in training, if any)")
    parser.add_argument("--output", default=None, metavar="FILE",
                        help="CSV to write (default: <data name>.predictions.csv in the current folder)")
    parser.add_argument("--encoding", default="auto", metavar="NAME",
                        help="text encoding of --data; auto tries UTF-8, then detects (default: auto)")
    parser.add_argument("--batch-size", type=int, default=64, metavar="N",
                        help="examples per forward pass (default: 64)")
    parser.add_argument("--max-length", type=int, default=None, metavar="N",
                        help="tokens per example; longer texts are truncated (default: as in training)")
    parser.add_argument("--model", default=None, metavar="PATH",
                        help="base model folder, when it moved since training (default: the path "
                             "recorded in the checkpoint; its weights must match the checkpoint's fingerprint)")
    parser.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    parser.set_defaults(run=cmd_predict)
    return parser


def cmd_predict(args) -> int:
    output = args.output or f"{Path(args.data).stem}.predictions.csv"
    path = predict_file(
        args.checkpoint,
        args.data,
        text_column=args.text_column,
        text_pair_column=args.text_pair_column,
        output_path=output,
        encoding=args.encoding,
        batch_size=args.batch_size,
        max_length=args.max_length,
        overwrite=args.overwrite,
        base_path=args.model,
    )
    print(f"wrote predictions to {path}")
    return 0
