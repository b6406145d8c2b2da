"""Labelled text tables in, tokenized, unpadded train / validation / test splits out.

`load_classification_data` reads the files (`tables.read_table`), maps columns,
normalizes labels, makes the splits and tokenizes them without padding; batching and
padding are `loader.make_loader`'s job.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from freezetune.core.device import MODEL_INPUTS
from freezetune.core.errors import FreezetuneError, did_you_mean
from freezetune.core.eval_sets import EvalSetSpec
from freezetune.io.tables import read_table

logger = logging.getLogger("freezetune")

_INT = re.compile(r"[+-]?\d+")
CHUNK_ROWS = 10_000  # rows tokenized at once: Python lists for one chunk, compact Arrow columns for the rest


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
    eval_sets: dict[str, EvalSet] = field(default_factory=dict)  # --extra-eval / --ood-set, by name


@dataclass
class EvalSet:
    """A tokenized evaluation set (``--extra-eval`` / ``--ood-set``), scored apart from validation and test."""

    name: str
    kind: str  # "extra" or "ood"
    path: str
    dataset: datasets.Dataset
    truncated: int  # examples cut at max_length
    dropped: int  # rows dropped (a missing value; causal-lm: no target token left)


def is_missing(value: Any) -> bool:
    """An empty or blank text, None or NaN (a list or dict cell is a value, not missing)."""
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


def read_columns(path: str | Path, columns: Sequence[str], *, encoding: str, header: bool,
                 flags: str) -> tuple[pd.DataFrame, int]:
    """Read a file, check it has ``columns`` (``flags`` name the options that choose them), drop the
    rows missing any of them; return (rows, how many were dropped)."""
    frame = read_table(path, encoding=encoding, header=header)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        named = ", ".join(f"{c!r}{did_you_mean(c, frame.columns)}" for c in missing)
        raise FreezetuneError(
            f"{path} has no column {named}; its columns are {', '.join(map(repr, frame.columns[:20]))}: "
            f"choose them with {flags}"
        )
    frame = frame[list(columns)]
    keep = ~frame.map(is_missing).any(axis=1)
    dropped = int((~keep).sum())
    if dropped == len(frame):
        raise FreezetuneError(f"{path}: all {len(frame)} rows have an empty {' or '.join(columns)}; check that "
                              f"{flags} name the columns that hold them")
    if dropped:
        logger.warning("%s: dropped %d of %d rows with a missing %s", path, dropped, len(frame), " or ".join(columns))
    return frame[keep], dropped  # the index keeps each row's position in the file (0 = first data row)


def validation_size(rows: int, fraction: float, max_eval_rows: int | None) -> int:
    """Rows split off for validation: the fraction, at least one row each side, capped by max_eval_rows."""
    return min(max(1, round(fraction * rows)), rows - 1, max_eval_rows or rows)


def check_split_options(validation_fraction: float, max_length: int) -> None:
    if not 0 < validation_fraction < 1:
        raise FreezetuneError(f"validation fraction must be between 0 and 1, got {validation_fraction}")
    if max_length < 2:
        raise FreezetuneError(f"max length must be at least 2 tokens, got {max_length}")


def _read_split(
    path: str | Path, columns: Sequence[str], label_column: str, *, encoding: str, header: bool,
    label_map: dict[str, str] | None = None,
) -> tuple[pd.DataFrame, int]:
    """Read a file, check its columns, drop rows missing a text or label; return (rows, dropped).

    ``label_map`` renames labels (an evaluation file's names to the training file's)."""
    flags = "--text-column / --label-column" + (" / --text-pair-column" if len(columns) > 1 else "")
    frame, dropped = read_columns(path, [*columns, label_column], encoding=encoding, header=header, flags=flags)
    frame[label_column] = frame[label_column].map(_label_name)
    if label_map:
        frame[label_column] = frame[label_column].map(lambda name: label_map.get(name, name))
    return frame, dropped


# A class with fewer rows than this share of the largest class's is named in the log.
RARE_SHARE = 0.1


def check_labels(labels: pd.Series, path: str | Path, *, training_labels: Sequence[str] | None = None,
                 min_class_count: int = 2) -> None:
    """The one check of a split's labels (names, as ``_label_name`` makes them), before anything trains.

    Training labels (no ``training_labels``): at least two classes, each with at least
    ``min_class_count`` rows; a class below it is most often a stray value left by broken quoting
    or a wrong delimiter. A class with far fewer rows than the largest is logged with its count.
    Evaluation or test labels (``training_labels`` given): none that the training data lacks.
    The index of ``labels`` is each row's position among the file's data rows (0: the first).
    """
    if training_labels is not None:
        counts = pd.Series(list(labels)).value_counts()
        unseen = _sort_labels(set(counts.index) - set(training_labels))
        if unseen:
            found = ", ".join(f"{name!r} ({_rows(counts[name])})" for name in unseen[:10])
            raise FreezetuneError(
                f"{path} has label(s) {found} never seen in the training data "
                f"({', '.join(map(repr, list(training_labels)[:10]))}): check --label-column or the files, or "
                "rename them with --label-map OLD=NEW"
            )
        return
    if min_class_count < 1:
        raise FreezetuneError(f"--min-class-count must be at least 1, got {min_class_count}")
    counts = labels.value_counts()
    if len(counts) < 2:
        raise FreezetuneError(
            f"{path} has a single label, {counts.index[0]!r} (all {counts.iloc[0]} rows): a classifier needs at "
            "least two classes; check --label-column or the file"
        )
    rare = counts[counts < min_class_count]
    if len(rare):
        described = "; ".join(f"{name!r} has {_rows(count)} ({_rows_of(labels, name)})"
                              for name, count in sorted(rare.items(), key=lambda item: (item[1], item[0]))[:5])
        raise FreezetuneError(
            f"{path}: label {described}, fewer than --min-class-count {min_class_count}; a stray label is often "
            "left by broken quoting or a wrong delimiter: fix the file, or pass --min-class-count 1 to keep it"
        )
    largest, most = counts.index[0], int(counts.iloc[0])
    for name, count in counts.items():
        if count < RARE_SHARE * most:
            logger.warning("%s: label %r has %d rows, far fewer than %r (%d): its scores will be noisy",
                           path, name, count, largest, most)


def _rows(count) -> str:
    return f"{int(count)} row{'' if int(count) == 1 else 's'}"


def _rows_of(labels: pd.Series, name: str, shown: int = 3) -> str:
    rows = [int(i) + 1 for i in labels.index[labels == name][:shown]]
    return f"data row{'s' * (len(rows) > 1)} {', '.join(map(str, rows))}"


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
    frame: pd.DataFrame, columns: Sequence[str], tokenizer: Any, max_length: int
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
    return {k: encoded[k] for k in MODEL_INPUTS if k in encoded}, truncated


def _to_dataset(frame: pd.DataFrame, columns: Sequence[str], label_column: str, label_ids: dict[str, int],
                tokenizer: Any, max_length: int, split: str) -> tuple[datasets.Dataset, int]:
    """The split's dataset, tokenized CHUNK_ROWS rows at a time, and how many examples were truncated."""
    parts, truncated = [], 0
    for start in range(0, len(frame), CHUNK_ROWS):
        chunk = frame.iloc[start:start + CHUNK_ROWS]
        encoded, cut = _tokenize(chunk, columns, tokenizer, max_length)
        labels = [label_ids[name] for name in chunk[label_column]]
        parts.append(datasets.Dataset.from_dict({**encoded, "labels": labels}))
        truncated += cut
    if truncated:
        logger.info("%d of %d %s texts were longer than max_length=%d and were truncated",
                    truncated, len(frame), split, max_length)
    return (parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)), truncated


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
    min_class_count: int = 2,
    label_map: dict[str, str] | None = None,
) -> ClassificationData:
    """Read, clean, split and tokenize a single-text or text-pair classification data set.

    Label names come from the whole (cleaned) training file, so the head's size does not
    depend on `max_train_rows`. `max_train_rows` takes a seeded, stratified sample of the
    training file before the validation split. Without `eval_path` the validation set is
    a seeded, stratified `validation_fraction` of the training rows. `max_eval_rows` caps
    the validation set (either source); the test set is never subsampled. ``label_map`` renames
    the labels of the validation and test files before they are checked against the training labels
    (``check_labels``, which also wants ``min_class_count`` rows per training class).
    """
    check_split_options(validation_fraction, max_length)
    columns = tuple(str(c) for c in (text_column, text_pair_column) if c is not None)
    label_column = str(label_column)
    read = partial(_read_split, columns=columns, label_column=label_column, encoding=encoding, header=header)

    train, dropped_train = read(train_path)
    check_labels(train[label_column], train_path, min_class_count=min_class_count)
    train = train.reset_index(drop=True)
    read = partial(read, label_map=label_map)  # the evaluation files' labels are renamed, never the training ones
    label_names = _sort_labels(set(train[label_column]))
    label_ids = {name: i for i, name in enumerate(label_names)}
    train = _subsample(train, label_column, max_train_rows, seed)
    dropped = {"train": dropped_train}

    if eval_path is None:
        if len(train) < 2:
            raise FreezetuneError(f"{train_path} has too few rows to split off a validation set: give --eval-data")
        # At least one row each side; max_eval_rows caps the validation side.
        size = validation_size(len(train), validation_fraction, max_eval_rows)
        rest, taken = _split_indices(train[label_column].tolist(), size, seed)
        train, validation = train.iloc[rest].reset_index(drop=True), train.iloc[taken].reset_index(drop=True)
        source = f"split of training data (seed {seed}, fraction {validation_fraction})"
        dropped["validation"] = 0  # its rows' drops are counted under "train"
    else:
        validation, dropped["validation"] = read(eval_path)
        check_labels(validation[label_column], eval_path, training_labels=label_names)  # every row, not a sample
        validation = _subsample(validation, label_column, max_eval_rows, seed)
        source = "eval-data"

    splits = {"train": train, "validation": validation}
    if test_path is not None:
        splits["test"], dropped["test"] = read(test_path)
        check_labels(splits["test"][label_column], test_path, training_labels=label_names)
    splits = {name: frame.reset_index(drop=True) for name, frame in splits.items()}

    built: dict[str, datasets.Dataset] = {}
    truncated: dict[str, int] = {}
    names = {"train": "training", "validation": "validation", "test": "test"}
    for split, frame in splits.items():
        built[split], truncated[split] = _to_dataset(frame, columns, label_column, label_ids, tokenizer, max_length,
                                                     names[split])
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


def load_eval_set(
    spec: EvalSetSpec, *, tokenizer: Any, label_names: Sequence[str], columns: Sequence[str], label_column: str,
    max_length: int = 128, encoding: str = "auto", seed: int = 0, max_rows: int | None = None, header: bool = True,
    label_map: dict[str, str] | None = None,
) -> EvalSet:
    """An evaluation set read like the test file (``label_map`` applied, labels checked the same way), sampled
    like validation (seeded, stratified, at most ``max_rows``) and tokenized like both."""
    frame, dropped = _read_split(spec.path, columns, label_column, encoding=encoding, header=header,
                                 label_map=label_map)
    check_labels(frame[label_column], f"{spec.kind} set {spec.name!r} ({spec.path})", training_labels=label_names)
    frame = _subsample(frame, label_column, max_rows, seed)
    label_ids = {name: i for i, name in enumerate(label_names)}
    dataset, truncated = _to_dataset(frame, columns, label_column, label_ids, tokenizer, max_length,
                                     f"{spec.kind} set {spec.name!r}")
    return EvalSet(spec.name, spec.kind, spec.path, dataset, truncated, dropped)
