"""Any bytes in a data file give a table or a FreezetuneError, never another exception."""

import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from freezetune.core.errors import FreezetuneError
from freezetune.io.data import read_columns
from freezetune.io.tables import read_table

FUZZ = settings(max_examples=200, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# Bytes that look like the formats (headers, delimiters, quotes, braces, newlines), mixed with any bytes.
PIECES = [b"text", b"label", b",", b"\t", b";", b'"', b"\n", b"\r\n", b"{", b"}", b"[", b"]", b":", b'"text"',
          b'"label"', b"\x00", b"\xff\xfe", b"\xef\xbb\xbf", b"\xe9", b"null", b"1", b" ", b"\\"]
CONTENT = st.one_of(
    st.binary(max_size=300),
    st.lists(st.one_of(st.sampled_from(PIECES), st.binary(max_size=4)), max_size=60).map(b"".join),
)


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".txt"])
@FUZZ
@given(content=CONTENT, header=st.booleans())
def test_any_bytes_give_a_table_or_a_clear_error(suffix, content, header):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"data{suffix}"
        path.write_bytes(content)
        try:
            frame = read_table(path, header=header)
        except FreezetuneError as error:
            assert "\n" not in str(error)  # one line
            return
        assert isinstance(frame, pd.DataFrame) and len(frame) > 0
        try:  # and what the training data reader makes of it
            read_columns(path, [str(frame.columns[0])], encoding="auto", header=header, flags="--text-column")
        except FreezetuneError as error:
            assert "\n" not in str(error)
