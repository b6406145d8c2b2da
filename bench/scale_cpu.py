"""How freezetune scales with rows on a CPU: memory, cache on disk and time per epoch.

``top_k:2`` on the embedded MiniLM, one epoch, the frozen-prefix cache forced on with
``--cache-ram-gb 0.25`` (so the bigger arms spill past it into a memmap in a temporary
``--cache-dir``), at 5,000 / 20,000 / all rows of the embedded tweets (38,158) and of SST-2 train
(../shared/data/glue/SST-2/train.tsv, 67,349). Validation is capped at 500 rows so that it costs
little next to the epoch. Each arm runs in its own process (peak memory never goes down inside one).

Measured per arm: peak anonymous memory (RssAnon in /proc/self/status, sampled every 50 ms by a
thread: pages of the disk memmap count towards plain RSS but not towards RssAnon, which is the
memory the process really holds), the largest size the cache folder reached on disk, the cache's
RAM part, the cache build time, the epoch's training time (without the build) and the wall time of
the whole arm (loading, tokenizing, caching, training, evaluating). Writes
bench/results/scale_cpu.md with the machine.

    nice -n 5 env HF_HUB_OFFLINE=1 .venv/bin/python bench/scale_cpu.py                 # every arm
    HF_HUB_OFFLINE=1 .venv/bin/python bench/scale_cpu.py --rows 500 --out /tmp/s.md  # smoke test
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SST2 = ROOT.parent / "shared" / "data" / "glue" / "SST-2" / "train.tsv"  # ../shared/data from the checkout
ALL_ROWS = {"tweets": 38_158, "sst2": 67_349}
ROWS = [5_000, 20_000, None]  # None: every row
RESULTS = ROOT / "bench" / "results" / "scale_cpu.md"


def rss_anon_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    return 0


def folder_bytes(folder: Path) -> int:
    total = 0
    for path in list(folder.iterdir()):
        try:
            total += path.stat().st_size
        except FileNotFoundError:  # a cache deleted while we looked
            pass
    return total


class Sampler(threading.Thread):
    """The largest RssAnon and cache-folder size seen, every 50 ms."""

    def __init__(self, folder: Path):
        super().__init__(daemon=True)
        self.folder, self.peak_kib, self.disk_bytes, self.done = folder, 0, 0, False

    def run(self) -> None:
        while not self.done:
            self.peak_kib = max(self.peak_kib, rss_anon_kib())
            self.disk_bytes = max(self.disk_bytes, folder_bytes(self.folder))
            time.sleep(0.05)


def arm(name: str, rows: int | None, sst2: str) -> dict:
    """One arm, in this process: train and measure; the result as a dict."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="scale-cpu-cache-") as cache_dir:
        sampler = Sampler(Path(cache_dir))
        sampler.start()
        from freezetune.core.config import DataConfig, TrainConfig
        from freezetune.runs.run import run_training
        from freezetune.runs.spec import RunSpec

        path = sst2 if name == "sst2" else None  # None: the embedded tweets
        columns = {"text_column": "sentence", "label_column": "label"} if path else {}
        spec = RunSpec("top_k:2", DataConfig(data=path, max_train_rows=rows, max_eval_rows=500, retention="none",
                                             **columns),
                       train=TrainConfig(epochs=1, cache="on", cache_ram_gb=0.25, cache_dir=cache_dir, progress=False))
        result = run_training(spec)
        sampler.done = True
        sampler.join()
    costs = result.fit.costs
    return {"data": name, "rows": result.data_summary["train_rows"], "peak_rss_anon_mib": sampler.peak_kib / 1024,
            "cache_disk_mib": sampler.disk_bytes / 2**20, "cache_mib": costs["cache_bytes"] / 2**20,
            "cache": costs["cache"], "cache_build_s": costs["cache_build_s"], "epoch_s": costs["train_time_s"],
            "wall_s": time.perf_counter() - started, "accuracy": result.validation.get("accuracy")}


def machine() -> str:
    import psutil
    import torch

    memory = psutil.virtual_memory().total / 2**30
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, {memory:.0f} GiB RAM, "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads), Python {platform.python_version()}")


def report(rows: list[dict], out: Path, command: str) -> None:
    lines = [
        "# Scaling with rows on a CPU (measured)",
        "",
        f"`{command}` on {dt.date.today()}; machine: {machine()}.",
        "",
        "top_k:2 on the embedded all-MiniLM-L6-v2, one epoch, batch 32, max length 128, cache forced on with "
        "`--cache-ram-gb 0.25` (the rest in a memmap in `--cache-dir`), validation capped at 500 rows. "
        "Peak memory is RssAnon (the memmap's pages are not in it); `cache on disk` is the largest the cache "
        "folder grew; `epoch` is training only, `build` the cache pass, `wall` the whole process.",
        "",
        "| data | training rows | peak RssAnon MiB | cache MiB | cache on disk MiB | build s | epoch s | "
        "epoch ms/row | wall s | val acc |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(f"| {r['data']} | {r['rows']:,} | {r['peak_rss_anon_mib']:.0f} | {r['cache_mib']:.0f} | "
                     f"{r['cache_disk_mib']:.0f} | {r['cache_build_s']:.1f} | {r['epoch_s']:.1f} | "
                     f"{1000 * r['epoch_s'] / r['rows']:.2f} | {r['wall_s']:.0f} | {r['accuracy']:.3f} |")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", help="row counts instead of 5,000 / 20,000 / all")
    parser.add_argument("--data", nargs="+", choices=sorted(ALL_ROWS), default=sorted(ALL_ROWS, reverse=True))
    parser.add_argument("--sst2", default=str(SST2), help="SST-2's train.tsv (default: ../shared/data/glue/SST-2)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--arm", nargs=2, metavar=("DATA", "ROWS"), help=argparse.SUPPRESS)  # one arm, this process
    args = parser.parse_args()
    if args.arm:
        name, rows = args.arm
        print(json.dumps(arm(name, None if rows == "all" else int(rows), args.sst2)))
        return
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join([str(ROOT / "src"),
                                                                              os.environ.get("PYTHONPATH", "")])}
    results = []
    for name in args.data:
        for rows in args.rows or ROWS:
            if rows is not None and rows >= ALL_ROWS[name]:
                continue
            done = subprocess.run([sys.executable, __file__, "--arm", name, str(rows or "all"), "--sst2", args.sst2], env=env,
                                  capture_output=True, text=True, check=False)
            if done.returncode != 0:
                sys.exit(f"arm {name} {rows or 'all'} failed:\n{done.stderr[-3000:]}")
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(json.dumps(results[-1]), flush=True)
    report(results, args.out, " ".join(["bench/scale_cpu.py", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
