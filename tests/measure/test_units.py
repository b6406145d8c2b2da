"""Sizes, times and counts as a user reads them, in tables and log lines."""

from freezetune.measure.metrics import format_table, scalar_metrics
from freezetune.measure.units import format_bytes, format_count, format_duration


def test_sizes_read_in_mib_or_gib():
    assert format_bytes(1_144_606_720) == "1.07 GiB"
    assert format_bytes(812 * 2**20) == "812 MiB"
    assert format_bytes(12.34 * 2**20) == "12.3 MiB"
    assert format_bytes(1.25 * 2**20) == "1.25 MiB"
    assert format_bytes(4_620) == "4.5 KiB"  # a head-only checkpoint: still distinguishable from a bigger one


def test_times_read_in_seconds_minutes_or_hours():
    assert format_duration(0.1414) == "0.141 s"
    assert format_duration(2.5) == "2.50 s"
    assert format_duration(42.14) == "42.1 s"
    assert format_duration(204) == "3.4 min"
    assert format_duration(4320) == "1.2 h"


def test_counts_are_whole_numbers():
    assert format_count(770.0) == "770"
    assert format_count(770_304) == "770,304"
    assert format_count(770_304.4) == "770,304"  # a mean over seeds of different plans


def test_table_columns_take_unit_names_as_formats():
    rows = [{"peak": 1_144_606_720, "params": 770.0, "time": 204.0, "step": 0.1414}]
    table = format_table(rows, [("params", "trainable", "count"), ("peak", "peak memory", "bytes"),
                                ("time", "train time", "duration"), ("step", "step", "duration")])
    assert table.splitlines()[-1] == "      770     1.07 GiB     3.4 min  0.141 s"
    assert "770.0" not in table and "1144606720" not in table.replace(",", "")


def test_scalar_metrics_leave_out_counts_and_bookkeeping():
    record = {"time": 1.5, "kind": "eval", "accuracy": 0.5, "n": 6, "step": 8, "epoch": 0, "per_class": {},
              "loss": 0.69, "target_tokens": 40}
    assert scalar_metrics(record) == {"accuracy": 0.5, "loss": 0.69}
    assert scalar_metrics(record, {"loss": "min"}) == {"loss": 0.69}
