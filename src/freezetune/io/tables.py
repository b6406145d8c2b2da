"""Reading tables: CSV / TSV / JSONL / Parquet in, a pandas DataFrame out.

`read_table` reads with an encoding option that detects what it can (the default data
set is latin-1, not UTF-8) and turns every unreadable file into one clear error.
"""

from __future__ import annotations

import csv
import io
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
        except UnicodeDecodeError:
            continue  # cp1252 leaves five bytes undefined; latin-1 decodes anything
        logger.info("%s is not UTF-8; read it as %s (set --encoding to override)", path, candidate)
        return text
    raise AssertionError("latin-1 decodes every byte sequence")


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
    # JSON: dtype=False and convert_dates=False keep values as written (no "1" -> 1, no dates).
    lines = fmt == "jsonl" or not text.lstrip().startswith("[")
    return pd.read_json(io.StringIO(text), lines=lines, dtype=False, convert_dates=False)
