"""Schedules with and without the frozen-prefix cache: time per step and in all, each arm in its own process.

Top-down LIFT and gradual unfreezing keep most of the prefix frozen, and every boundary they
visit has an untouched prefix, so one pass stores them all (training/schedule_cache.py). This
trains each schedule twice on the protocol's SST-2 2,000-row task (bench/protocol.yaml, seed 0,
3 epochs of 63 steps), `--cache auto` against `--cache off`, and reports the median step time,
the training wall time (the cache's pass included) and the test accuracy, which must agree.

    .venv/bin/python bench/schedule_cache.py          # about 10 minutes on 2 CPU cores
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import protocol
import torch

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "schedule_cache.md"
SCHEDULES = ["lift:steps=31", "gradual_unfreeze:steps=27"]  # each phase 31 / 27 steps: the whole run is walked


def arm(strategy: str, cache: str, folder: Path) -> dict:
    base = protocol.base_spec("sst2_2000")
    d, t = base.data, base.train
    args = [str(Path(sys.executable).with_name("freezetune")), "--log-level", "warning", "train", "--data", d.data,
            "--eval-data", d.eval_data, "--test-data", d.test_data, "--text-column", d.text_column,
            "--label-column", d.label_column, "--max-length", str(d.max_length), "--epochs", str(t.epochs),
            "--batch-size", str(t.batch_size), "--retention", "none", "--no-progress", "--strategy", strategy,
            "--cache", cache, "--output", str(folder)]
    subprocess.run(args, check=True, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    metrics = json.loads((folder / "metrics.json").read_text())
    return {**metrics["costs"], "accuracy": metrics["test"]["accuracy"]}


def main() -> int:
    if not protocol.SHARED.is_dir():
        print(f"skipped: {protocol.SHARED} is absent", file=sys.stderr)
        return 0
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for strategy in SCHEDULES:
            runs = {cache: arm(strategy, cache, Path(tmp) / f"{strategy}-{cache}".replace(":", "_"))
                    for cache in ("off", "auto")}
            rows.append((strategy, runs))
            print(strategy, {c: (r["steady_step_s"], r["train_time_s"], r["cache"]) for c, r in runs.items()},
                  flush=True)
    lines = [
        "# Schedules with the frozen-prefix cache", "",
        f"Machine: {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), torch {torch.__version__}, "
        "fp32. Command: `.venv/bin/python bench/schedule_cache.py`. SST-2, 2,000 rows of the shared protocol, "
        "seed 0, 3 epochs x 63 steps, batch 32, max length 64; each arm in its own process, one after the other.", "",
        "| schedule | cache | median step (s) | training wall (s) | cache pass (s) | test accuracy | cache |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for strategy, runs in rows:
        for cache, r in runs.items():
            lines.append(f"| {strategy} | {cache} | {r['steady_step_s']:.3f} | {r['train_time_s']:.1f} | "
                         f"{r.get('cache_build_s', 0):.1f} | {r['accuracy']:.3f} | {r['cache']} |")
    lines += ["", "Ratios (off / on): " + "; ".join(
        f"{s}: {runs['off']['steady_step_s'] / runs['auto']['steady_step_s']:.2f}x per step, "
        f"{runs['off']['train_time_s'] / runs['auto']['train_time_s']:.2f}x in all" for s, runs in rows)]
    OUT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
