"""Schedules against full fine-tuning and the best static plan, on a task of the shared protocol.

Reads the committed run store (bench/results/runs/<task>/, written by bench/protocol.py) and
reports per plan, mean ± sd over seeds: the task metric on test, STS-B retention, training wall
time, time to the best validation epoch, step time and peak memory. The best static plan is the
one with the best mean validation metric among the protocol's static plans.

    .venv/bin/python bench/protocol.py --tasks cola_2000 --plans lift:steps=42 gradual_unfreeze:steps=36 \\
        lisa:2:interval=20 hft:epochs=1 autofreeze:interval=20:tolerance=0.1
    .venv/bin/python bench/schedules_protocol.py cola_2000 lift:steps=42 gradual_unfreeze:steps=36 ...
"""

import os
import platform
import statistics
import sys
from pathlib import Path

import protocol

ROOT = Path(__file__).resolve().parents[1]


def pm(values, fmt):
    return f"{format(statistics.fmean(values), fmt)} ± {format(statistics.stdev(values) if len(values) > 1 else 0, fmt)}"


def main() -> int:
    key, schedules = sys.argv[1], sys.argv[2:]
    entry = protocol.task(key)
    name = entry["metric"]
    runs: dict[str, list[dict]] = {}
    for run in protocol.committed(key):
        runs.setdefault(run["strategy"], []).append(run)
    monitored = "accuracy" if name == "f1" else name
    static = [p for p in protocol.PROTOCOL["plans"] if p in runs]
    best_static = max((p for p in static if p != "full"),
                      key=lambda p: statistics.fmean(r["validation"][monitored] for r in runs[p]))
    lines = [
        f"# Schedules on {entry['name']}, against full fine-tuning and the best static plan on validation", "",
        f"Protocol `bench/protocol.yaml` ({entry['epochs']} epochs, max length {protocol.PROTOCOL['max_length']}, "
        f"batch {protocol.PROTOCOL['batch_size']}, each plan's default rate, seeds {protocol.PROTOCOL['seeds']}); "
        f"test metric: {name} on the GLUE dev set; STS-B Spearman on {protocol.PROTOCOL['retention']['limit']} pairs. "
        f"Machine: {os.cpu_count()} CPU cores ({platform.machine()}), fp32. Best static plan on validation "
        f"({monitored}): {best_static}.", "",
        f"| plan | seeds | test {name} | STS-B after | train s | s to best val | s/step | peak MiB | trained params |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for plan in ["full", best_static, *schedules]:
        rs = runs.get(plan, [])
        if not rs:
            lines.append(f"| {plan} | 0 | not run | | | | | | |")
            continue
        to_best = [sum((r["epoch_times_s"] or [])[: r["validation"].get("epoch", 0) + 1]) for r in rs]
        s = [r["summary"] for r in rs]
        lines.append(
            f"| {plan} | {len(rs)} | {pm([protocol.metric(r, name) for r in rs], '.3f')} | "
            f"{pm([x['retention_after'] for x in s], '.3f')} | {pm([x['train_time_s'] for x in s], '.0f')} | "
            f"{pm(to_best, '.0f')} | {statistics.fmean(x['steady_step_s'] for x in s):.2f} | "
            f"{statistics.fmean(x['peak_memory_bytes'] for x in s) / 2**20:.0f} | {s[0]['trainable_params']:,} |")
    out = ROOT / "bench" / "results" / f"schedules_{key}.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
