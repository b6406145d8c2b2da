"""Atomic writes: a failed write (a full disk) leaves the earlier file whole and says so in one line."""

import errno

import pytest

from freezetune.core.atomic import atomic_write, atomic_write_text
from freezetune.core.errors import FreezetuneError


def test_a_full_disk_keeps_the_old_file_and_is_one_line(tmp_path):
    target = atomic_write_text(tmp_path / "metrics.json", "old\n")

    def full(handle):
        handle.write("half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(FreezetuneError, match="no space left on device; free some space") as error:
        atomic_write(target, full)
    assert "\n" not in str(error.value)
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_other_os_errors_pass_through(tmp_path):
    def denied(handle):
        raise OSError(errno.EACCES, "Permission denied")

    with pytest.raises(PermissionError):
        atomic_write(tmp_path / "x", denied)
