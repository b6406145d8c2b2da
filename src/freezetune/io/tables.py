"""Reading tables: CSV / TSV / JSONL / Parquet in, a pandas DataFrame out.

`read_table` reads with an encoding option that detects what it can (the default data
set is latin-1, not UTF-8) and turns every unreadable file into one clear error.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from pathlib import Path

import pandas as pd

from freezetune.core.errors import FreezetuneError

logger = logging.getLogger("freezetune")

FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "json", ".parquet": "parquet", ".txt": "text"}


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
        except (UnicodeDecodeError, LookupError):
            continue  # cp1252 leaves five bytes undefined; latin-1 decodes anything
        logger.info("%s is not UTF-8; read it as %s (set --encoding to override)", path, candidate)
        return text
    raise AssertionError("latin-1 decodes every byte sequence")


def _check_text(text: str, path: Path) -> None:
    """Refuse an empty file, and a binary one (many control characters) read as text."""
    if not text.strip():
        raise FreezetuneError(f"{path} is empty; give a file with a header row and data rows")
    head = text[:4096]
    control = sum(1 for c in head if c < " " and c not in "\t\n\r\f")
    if control > len(head) / 100:
        raise FreezetuneError(
            f"{path} looks binary, not text ({control} control characters in its first {len(head)}): give a CSV, "
            "TSV or JSON Lines file (a Parquet file needs the .parquet extension)"
        )


def read_table(
    path: str | Path, *, encoding: str = "auto", file_format: str | None = None, header: bool = True
) -> pd.DataFrame:
    """Read a CSV, TSV, JSON Lines (.jsonl, or .json holding lines or one array) or Parquet table.

    A ``.txt`` file is plain text: its paragraphs (blank-line separated) become rows of a
    ``text`` column.

    The format comes from the extension unless `file_format` names it. TSV is read with
    quoting off: GLUE's MRPC and STS-B have stray `"` inside texts and quote-aware
    parsing silently merges or drops rows. CSV keeps normal quoting (fields with commas
    are quoted). `header=False` reads header-less CSV/TSV (GLUE CoLA); the columns are
    then named "0", "1", ... Only empty fields count as missing: a text "NA" stays text.
    Every unreadable file (missing, a folder, empty, binary, malformed, with the wrong
    delimiter) is a FreezetuneError that says what is wrong.
    """
    path = Path(path)
    if path.is_dir():
        raise FreezetuneError(f"{path} is a folder, not a file; give the data file itself (CSV, TSV, JSONL, Parquet)")
    if not path.is_file():
        raise FreezetuneError(f"no such file: {path}; check the path")
    fmt = file_format or FORMATS.get(path.suffix.lower())
    if fmt not in FORMATS.values():
        raise FreezetuneError(
            f"cannot tell the format of {path}: use one of {', '.join(FORMATS)} or pass the format explicitly"
        )
    text = ""
    try:
        if fmt == "parquet":
            frame = pd.read_parquet(path)
        else:
            text = _decode(path.read_bytes(), path, encoding)
            _check_text(text, path)
            frame = _parse_text(text, fmt, header, path)
    except pd.errors.EmptyDataError:
        raise FreezetuneError(f"{path} is empty; give a file with a header row and data rows") from None
    except (pd.errors.ParserError, ValueError, OSError, TypeError, AttributeError) as err:
        if isinstance(err, FreezetuneError):
            raise
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        fix = "check the file or its format"
        if "inside string" in reason:  # pandas: EOF inside string starting at row N
            fix = 'a " opened there is never closed: close it, or double the quotes inside the text ("")'
        raise FreezetuneError(f"cannot parse {path} as {fmt}: {reason}{_delimiter_hint(text, fmt)}; {fix}") from None
    frame.columns = [str(c).lstrip("\ufeff").strip() for c in frame.columns]  # BOM if encoding="utf-8"
    if fmt in ("csv", "tsv") and len(frame.columns) == 1:
        hint = _delimiter_hint(text, fmt)
        if hint:
            raise FreezetuneError(f"{path} has one column, {frame.columns[0]!r}{hint}")
    if frame.empty:
        if header and fmt in ("csv", "tsv") and len(frame.columns):
            raise FreezetuneError(
                f"{path} has a header ({', '.join(map(repr, frame.columns[:10]))}) but no data rows; add rows"
            )
        raise FreezetuneError(f"{path} has no data rows")
    return frame


DELIMITERS = {",": "comma", "\t": "tab", ";": "semicolon", "|": "pipe"}


def _delimiter_hint(text: str, fmt: str) -> str:
    """``; it looks tab-separated: ...`` when the first lines split on another delimiter than ``fmt``'s."""
    if fmt not in ("csv", "tsv") or not text:
        return ""
    expected = "\t" if fmt == "tsv" else ","
    lines = text.splitlines()[:20]
    try:
        found = csv.Sniffer().sniff("\n".join(lines), delimiters="".join(DELIMITERS)).delimiter
    except csv.Error:
        return ""
    if found == expected or found not in lines[0]:
        return ""
    fix = {"\t": "rename it to .tsv", ",": "rename it to .csv"}.get(found, "save it comma-separated (or as .tsv)")
    return f"; it looks {DELIMITERS[found]}-separated, not {DELIMITERS[expected]}-separated: {fix}"


def _parse_text(text: str, fmt: str, header: bool, path: Path) -> pd.DataFrame:
    """Parse decoded text; `pd.errors.ParserError` / `ValueError` on malformed input."""
    if fmt == "text":  # plain text: each paragraph (blank-line separated) is a row of column "text"
        paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text)]  # its own line breaks stay
        return pd.DataFrame({"text": [p for p in paragraphs if p]})
    if fmt in ("csv", "tsv"):
        return pd.read_csv(
            io.StringIO(text),
            sep="\t" if fmt == "tsv" else ",",
            quoting=csv.QUOTE_NONE if fmt == "tsv" else csv.QUOTE_MINIMAL,
            header=0 if header else None,
            keep_default_na=False,
            na_values=[""],
        )
    if fmt == "json" and text.lstrip().startswith("["):
        # dtype=False and convert_dates=False keep values as written (no "1" -> 1, no dates).
        return pd.read_json(io.StringIO(text), dtype=False, convert_dates=False)
    return _parse_json_lines(text, path)


def _parse_json_lines(text: str, path: Path) -> pd.DataFrame:
    """One JSON object per line (blank lines skipped); a bad line is named by its number."""
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as err:
            raise FreezetuneError(f"line {number} of {path} is not valid JSON ({err}); each line must be one "
                                  'JSON object such as {"text": "...", "label": "..."}') from None
        if not isinstance(record, dict):
            raise FreezetuneError(f"line {number} of {path} is a JSON {type(record).__name__}, not an object; each "
                                  'line must be one JSON object such as {"text": "...", "label": "..."}')
        records.append(record)
    return pd.DataFrame.from_records(records)
