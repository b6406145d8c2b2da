"""Labelled text tables in, tokenized splits and padded batches out.

`read_table` reads CSV / TSV / JSONL / Parquet with an encoding option that detects
what it can (the default data set is latin-1, not UTF-8). `load_classification_data`
maps columns, normalizes labels, makes the train / validation / test splits and
tokenizes them without padding; `make_loader` pads per batch, optionally bucketing
examples of similar length so that little compute goes to padding.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, Sampler

from freezetune.core.errors import FreezetuneError

logger = logging.getLogger("freezetune")

FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "json", ".parquet": "parquet"}
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_INT = re.compile(r"[+-]?\d+")


# --------------------------------------------------------------------------- reading


def _decode(raw: bytes, path: Path, encoding: str) -> str:
    """Bytes to text. "auto" tries UTF-8 first and otherwise guesses; it never fails."""
    if encoding != "auto":
        try:
            return raw.decode(encoding)
        except LookupError:
            raise FreezetuneError(f"unknown encoding {encoding!r}: use e.g. utf-8, latin-1, cp1252 or auto") from None
        except UnicodeDecodeError as err:
            raise FreezetuneError(
                f"{path} is not valid {encoding} (byte offset {err.start}: {raw[err.start:err.start + 1]!r}); "
                "pass its real encoding, e.g. --encoding latin-1, or --encoding auto to detect it"
            ) from None
    try:
        return raw.decode("utf-8-sig")  # utf-8-sig also drops a leading BOM
    except UnicodeDecodeError:
        pass
    used = None
    try:
        import charset_normalizer
        from charset_normalizer.utils import is_multi_byte_encoding

        best = charset_normalizer.from_bytes(raw).best()
        # Trust the detector for multi-byte encodings (UTF-16, Shift-JIS...). Among the
        # single-byte Latin code pages its guess on mostly-ASCII text is arbitrary (it
        # calls the latin-1 default data iso8859_10), so those fall through to cp1252.
        if best is not None and is_multi_byte_encoding(best.encoding):
            used = best.encoding
    except ImportError:
        pass
    for candidate in ([used] if used else []) + ["cp1252", "latin-1"]:
        try:
            text = raw.decode(candidate)
        except UnicodeDecodeError:
            continue  # cp1252 leaves five bytes undefined; latin-1 decodes anything
        logger.info("%s is not UTF-8; read it as %s (set --encoding to override)", path, candidate)
        return text
    raise AssertionError("latin-1 decodes every byte sequence")


def read_table(
    path: str | Path, *, encoding: str = "auto", file_format: str | None = None, header: bool = True
) -> pd.DataFrame:
    """Read a CSV, TSV, JSON Lines (.jsonl, or .json holding lines or one array) or Parquet table.

    The format comes from the extension unless `file_format` names it. TSV is read with
    quoting off: GLUE's MRPC and STS-B have stray `"` inside texts and quote-aware
    parsing silently merges or drops rows. CSV keeps normal quoting (fields with commas
    are quoted). `header=False` reads header-less CSV/TSV (GLUE CoLA); the columns are
    then named "0", "1", ... Only empty fields count as missing: a text "NA" stays text.
    """
    path = Path(path)
    if not path.is_file():
        raise FreezetuneError(f"no such file: {path}")
    fmt = file_format or FORMATS.get(path.suffix.lower())
    if fmt not in FORMATS.values():
        raise FreezetuneError(
            f"cannot tell the format of {path}: use one of {', '.join(FORMATS)} or pass the format explicitly"
        )
    try:
        if fmt == "parquet":
            frame = pd.read_parquet(path)
        else:
            text = _decode(path.read_bytes(), path, encoding)
            if not text.strip():
                raise FreezetuneError(f"{path} has no data rows")
            frame = _parse_text(text, fmt, header)
    except pd.errors.EmptyDataError:
        raise FreezetuneError(f"{path} has no data rows") from None
    except (pd.errors.ParserError, ValueError, OSError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise FreezetuneError(f"cannot parse {path} as {fmt}: {reason}; check the file or its format") from None
    frame.columns = [str(c).lstrip("\ufeff").strip() for c in frame.columns]  # BOM if encoding="utf-8"
    if frame.empty:
        raise FreezetuneError(f"{path} has no data rows")
    return frame


def _parse_text(text: str, fmt: str, header: bool) -> pd.DataFrame:
    """Parse decoded text; `pd.errors.ParserError` / `ValueError` on malformed input."""
    if fmt in ("csv", "tsv"):
        return pd.read_csv(
            io.StringIO(text),
            sep="\t" if fmt == "tsv" else ",",
            quoting=csv.QUOTE_NONE if fmt == "tsv" else csv.QUOTE_MINIMAL,
            header=0 if header else None,
            keep_default_na=False,
            na_values=[""],
        )
    # JSON: dtype=False and convert_dates=False keep values as written (no "1" -> 1, no dates).
    lines = fmt == "jsonl" or not text.lstrip().startswith("[")
    return pd.read_json(io.StringIO(text), lines=lines, dtype=False, convert_dates=False)


# --------------------------------------------------------------------------- classification data


@dataclass
class ClassificationData:
    """Tokenized, unpadded splits of a text classification data set."""

    train: datasets.Dataset  # input_ids, attention_mask, [token_type_ids], labels (int)
    validation: datasets.Dataset
    test: datasets.Dataset | None
    label_names: list[str]  # label id -> name
    validation_source: str  # "eval-data" or "split of training data (seed N, fraction F)"
    truncated: dict[str, int]  # per split: examples longer than max_length, truncated
    dropped: dict[str, int]  # per split: rows dropped for a missing text or label
    text_columns: tuple[str, ...]


def _is_missing(value: Any) -> bool:
    if isinstance(value, str):
        return not value.strip()
    return pd.api.types.is_scalar(value) and bool(pd.isna(value))


def _label_name(value: Any) -> str:
    """Labels are names: 1, 1.0 (an int column with gaps read as float) and "1" all become "1"."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


def _sort_labels(names: set[str]) -> list[str]:
    if all(_INT.fullmatch(n) for n in names):
        return sorted(names, key=int)
    return sorted(names)


def _read_split(
    path: str | Path, columns: Sequence[str], label_column: str, *, encoding: str, header: bool
) -> tuple[pd.DataFrame, int]:
    """Read a file, check its columns, drop rows missing a text or label; return (rows, dropped)."""
    frame = read_table(path, encoding=encoding, header=header)
    wanted = [*columns, label_column]
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise FreezetuneError(
            f"{path} has no column {', '.join(map(repr, missing))}; its columns are "
            f"{', '.join(map(repr, frame.columns))}: choose them with --text-column / --label-column"
            + (" / --text-pair-column" if len(columns) > 1 else "")
        )
    frame = frame[wanted]
    keep = ~frame.map(_is_missing).any(axis=1)
    dropped = int((~keep).sum())
    if dropped:
        logger.warning("%s: dropped %d of %d rows with a missing text or label", path, dropped, len(frame))
    frame = frame[keep].reset_index(drop=True)
    if frame.empty:
        raise FreezetuneError(f"{path} has no data rows with both a text and a label")
    frame[label_column] = frame[label_column].map(_label_name)
    return frame, dropped


def _split_indices(labels: Sequence[str], take: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of range(len(labels)) into (rest, `take` rows), stratified by label when possible."""
    index = np.arange(len(labels))
    try:
        rest, taken = train_test_split(index, test_size=take, stratify=labels, random_state=seed)
    except ValueError:
        # A class with a single row, or fewer rows taken than there are classes:
        # stratification is impossible, a plain seeded split is the next best thing.
        logger.info("cannot stratify a split of %d rows by label; splitting without stratification", take)
        rest, taken = train_test_split(index, test_size=take, random_state=seed)
    return np.sort(rest), np.sort(taken)  # keep file order inside each part


def _subsample(frame: pd.DataFrame, label_column: str, limit: int | None, seed: int) -> pd.DataFrame:
    if limit is None or limit >= len(frame):
        return frame
    if limit < 1:
        raise FreezetuneError(f"a row limit must be at least 1, got {limit}")
    _, taken = _split_indices(frame[label_column].tolist(), limit, seed)
    return frame.iloc[taken].reset_index(drop=True)


def _tokenize(
    frame: pd.DataFrame, columns: Sequence[str], tokenizer: Any, max_length: int, split: str
) -> tuple[dict[str, list], int]:
    """Tokenize without padding; return the encodings and how many examples were truncated."""
    texts = [[str(v) for v in frame[c]] for c in columns]
    pairs = texts[1] if len(texts) > 1 else None
    encoded = tokenizer(texts[0], pairs, truncation=True, max_length=max_length)
    # Only examples that reached max_length can have been cut: re-tokenize just those
    # without truncation to count them, instead of tokenizing everything twice.
    hits = [i for i, ids in enumerate(encoded["input_ids"]) if len(ids) >= max_length]
    truncated = 0
    if hits:
        full = tokenizer(
            [texts[0][i] for i in hits],
            [pairs[i] for i in hits] if pairs else None,
            truncation=False,
            verbose=False,  # no "sequence longer than the model's maximum" warning: we report it
        )["input_ids"]
        truncated = sum(len(ids) > max_length for ids in full)
    if truncated:
        logger.info(
            "%d of %d %s texts were longer than max_length=%d and were truncated",
            truncated, len(frame), split, max_length,
        )
    return {k: encoded[k] for k in MODEL_INPUTS if k in encoded}, truncated


def _to_dataset(encoded: dict[str, list], labels: Sequence[str], label_ids: dict[str, int]) -> datasets.Dataset:
    return datasets.Dataset.from_dict({**encoded, "labels": [label_ids[name] for name in labels]})


def load_classification_data(
    train_path: str | Path,
    *,
    tokenizer: Any,
    text_column: str = "text",
    label_column: str = "label",
    text_pair_column: str | None = None,
    eval_path: str | Path | None = None,
    test_path: str | Path | None = None,
    max_length: int = 128,
    encoding: str = "auto",
    validation_fraction: float = 0.1,
    seed: int = 0,
    max_train_rows: int | None = None,
    max_eval_rows: int | None = None,
    header: bool = True,
) -> ClassificationData:
    """Read, clean, split and tokenize a single-text or text-pair classification data set.

    Label names come from the whole (cleaned) training file, so the head's size does not
    depend on `max_train_rows`. `max_train_rows` takes a seeded, stratified sample of the
    training file before the validation split. Without `eval_path` the validation set is
    a seeded, stratified `validation_fraction` of the training rows. `max_eval_rows` caps
    the validation set (either source); the test set is never subsampled.
    """
    if not 0 < validation_fraction < 1:
        raise FreezetuneError(f"validation fraction must be between 0 and 1, got {validation_fraction}")
    if max_length < 2:
        raise FreezetuneError(f"max length must be at least 2 tokens, got {max_length}")
    columns = tuple(str(c) for c in (text_column, text_pair_column) if c is not None)
    label_column = str(label_column)
    read = partial(_read_split, columns=columns, label_column=label_column, encoding=encoding, header=header)

    train, dropped_train = read(train_path)
    label_names = _sort_labels(set(train[label_column]))
    label_ids = {name: i for i, name in enumerate(label_names)}
    train = _subsample(train, label_column, max_train_rows, seed)
    dropped = {"train": dropped_train}

    if eval_path is None:
        if len(train) < 2:
            raise FreezetuneError(f"{train_path} has too few rows to split off a validation set: give --eval-data")
        # At least one row each side; max_eval_rows caps the validation side.
        size = min(max(1, round(validation_fraction * len(train))), len(train) - 1, max_eval_rows or len(train))
        rest, taken = _split_indices(train[label_column].tolist(), size, seed)
        train, validation = train.iloc[rest].reset_index(drop=True), train.iloc[taken].reset_index(drop=True)
        source = f"split of training data (seed {seed}, fraction {validation_fraction})"
        dropped["validation"] = 0  # its rows' drops are counted under "train"
    else:
        validation, dropped["validation"] = read(eval_path)
        validation = _subsample(validation, label_column, max_eval_rows, seed)
        source = "eval-data"

    splits = {"train": train, "validation": validation}
    checked = {"validation": eval_path} if eval_path is not None else {}
    if test_path is not None:
        splits["test"], dropped["test"] = read(test_path)
        checked["test"] = test_path
    for split, path in checked.items():
        unseen = _sort_labels(set(splits[split][label_column]) - set(label_names))
        if unseen:
            raise FreezetuneError(
                f"{path} has label(s) {', '.join(map(repr, unseen[:10]))} never seen in the training data "
                f"({', '.join(map(repr, label_names[:10]))}): check --label-column or the files"
            )

    built: dict[str, datasets.Dataset] = {}
    truncated: dict[str, int] = {}
    names = {"train": "training", "validation": "validation", "test": "test"}
    for split, frame in splits.items():
        encoded, truncated[split] = _tokenize(frame, columns, tokenizer, max_length, names[split])
        built[split] = _to_dataset(encoded, frame[label_column].tolist(), label_ids)
    return ClassificationData(
        train=built["train"],
        validation=built["validation"],
        test=built.get("test"),
        label_names=label_names,
        validation_source=source,
        truncated=truncated,
        dropped=dropped,
        text_columns=columns,
    )


# --------------------------------------------------------------------------- batching


def _as_list(values: Any) -> list:
    return values.tolist() if hasattr(values, "tolist") else list(values)


def collate(features: Sequence[Mapping[str, Any]], pad_token_id: int = 0) -> dict[str, torch.Tensor]:
    """Pad a list of tokenized examples to the longest one; return LongTensors.

    input_ids are padded with `pad_token_id`, attention_mask and token_type_ids with 0
    (an attention_mask is made when absent). Integer labels become a 1-D tensor;
    per-token labels (lists) are padded with -100, the index losses ignore.
    """
    ids = [_as_list(f["input_ids"]) for f in features]
    longest = max(len(x) for x in ids)

    def pad(rows: list[list[int]], value: int, width: int = longest) -> torch.Tensor:
        return torch.tensor([row + [value] * (width - len(row)) for row in rows], dtype=torch.long)

    batch = {"input_ids": pad(ids, pad_token_id)}
    masks = [_as_list(f["attention_mask"]) for f in features] if "attention_mask" in features[0] else None
    batch["attention_mask"] = pad(masks or [[1] * len(x) for x in ids], 0)
    if "token_type_ids" in features[0]:
        batch["token_type_ids"] = pad([_as_list(f["token_type_ids"]) for f in features], 0)
    if "index" in features[0]:  # example positions, for the frozen-prefix cache
        batch["index"] = torch.tensor([int(f["index"]) for f in features], dtype=torch.long)
    if "labels" in features[0]:
        labels = [f["labels"] for f in features]
        if isinstance(labels[0], (list, tuple)) or getattr(labels[0], "ndim", 0) > 0:
            rows = [_as_list(x) for x in labels]
            batch["labels"] = pad(rows, -100, max(len(r) for r in rows))
        else:
            batch["labels"] = torch.tensor([int(x) for x in labels], dtype=torch.long)
    return batch


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of similar-length examples, in a seeded random order.

    Each pass shuffles the examples, sorts each chunk of `chunk_batches` batches by
    length, cuts it into batches and shuffles the batches. Sorting only within chunks
    keeps batches varied from epoch to epoch while most of the padding goes away.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, *, shuffle: bool, seed: int = 0,
                 chunk_batches: int = 50) -> None:
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.chunk = batch_size * chunk_batches
        self.generator = torch.Generator().manual_seed(seed)  # one stream: new order each epoch

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        n = len(self.lengths)
        order = torch.randperm(n, generator=self.generator).numpy() if self.shuffle else np.arange(n)
        batches = []
        for start in range(0, n, self.chunk):
            chunk = order[start:start + self.chunk]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            batches += [chunk[i:i + self.batch_size].tolist() for i in range(0, len(chunk), self.batch_size)]
        if self.shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=self.generator).tolist()]
        return iter(batches)


def _lengths(dataset: Any) -> list[int]:
    if isinstance(dataset, datasets.Dataset):
        return [len(ids) for ids in dataset["input_ids"]]  # one column read, not row by row
    return [len(dataset[i]["input_ids"]) for i in range(len(dataset))]


def make_loader(
    dataset: Any,
    *,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    pad_token_id: int = 0,
    bucket: bool = False,
) -> DataLoader:
    """A DataLoader of dynamically padded dict batches (see `collate`).

    The order is reproducible: shuffling draws from a torch.Generator seeded with `seed`.
    `bucket=True` groups examples of similar length (`BucketBatchSampler`).
    """
    if batch_size < 1:
        raise FreezetuneError(f"batch size must be at least 1, got {batch_size}")
    collate_fn = partial(collate, pad_token_id=pad_token_id)
    if bucket:
        sampler = BucketBatchSampler(_lengths(dataset), batch_size, shuffle=shuffle, seed=seed)
        return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_fn)
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator, collate_fn=collate_fn)
