"""One writer per run folder: a live holder is named by PID; a lock left by a dead process blocks nothing."""

import os
import subprocess
import sys

import pytest

from freezetune.core.errors import FreezetuneError
from freezetune.io.lock import LOCK_FILE, RunLock
from freezetune.io.rundir import RunDir

HOLD = """
import fcntl, os, sys, time
handle = open(sys.argv[1], "a+")
fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
handle.truncate(0); handle.write(f"{os.getpid()}\\n"); handle.flush()
print("locked", flush=True)
time.sleep(60)
"""


def test_a_second_writer_is_refused_with_the_first_ones_pid(tmp_path):
    (tmp_path / "config.yaml").write_text("strategy: full\n")
    command = [sys.executable, "-c", HOLD, str(tmp_path / LOCK_FILE)]
    holder = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(FreezetuneError, match=rf"being written by another freezetune process \(PID {holder.pid}\)"):
            RunLock(tmp_path).acquire()
        with pytest.raises(FreezetuneError, match=rf"PID {holder.pid}"):  # before "already holds a run"
            RunDir.create(tmp_path)
    finally:
        holder.kill()
        holder.wait()
    RunLock(tmp_path).acquire().release()  # the OS dropped the killed holder's lock


def test_a_stale_lock_file_from_a_dead_process_does_not_block(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / LOCK_FILE).write_text(dead.stdout)
    lock = RunLock(tmp_path).acquire()
    assert (tmp_path / LOCK_FILE).read_text() == f"{os.getpid()}\n"
    lock.release()
    run = RunDir.create(tmp_path)  # a folder holding only a stale lock counts as empty
    run.write_text("config.yaml", "strategy: full\n")
    run.close()


def test_a_run_folder_holds_its_lock_until_closed(tmp_path):
    run = RunDir.create(tmp_path / "run")
    run.write_text("config.yaml", "x: 1\n")
    with pytest.raises(FreezetuneError, match=f"PID {os.getpid()}"):
        RunLock(tmp_path / "run").acquire()
    run.close()
    RunLock(tmp_path / "run").acquire().release()
