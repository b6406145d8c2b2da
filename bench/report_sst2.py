"""The report's evidence: SST-2 at 100 / 1,000 / 2,000 training rows, customer reviews as the out-of-domain set.

Every plan runs under the shared protocol (bench/protocol.yaml) and its run store, so runs
the selection and schedule benchmarks already trained are reused: a kept checkpoint is only
scored on the out-of-domain set, never retrained. The out-of-domain set is custrev
(../shared/data/sentiment-ood: product reviews, `label text` per line), converted here to
the SST-2 columns. Writes bench/results/report_sst2/ (report.html, report.md, plots/,
results.json and a browser screenshot, report.png).

    nice .venv/bin/python bench/report_sst2.py                # everything (about an hour on 2 CPU cores)
    .venv/bin/python bench/report_sst2.py --report-only       # rebuild the report from the finished runs
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import protocol

from freezetune.report import build_report
from freezetune.runs.sweep import Sweep, run_sweep

OUT = protocol.ROOT / "bench" / "results" / "report_sst2"
WORK = protocol.ROOT / "bench" / ".cache" / "report_sst2"
CUSTREV = protocol.SHARED / "sentiment-ood" / "custrev.all"
SIZES = ("sst2_100", "sst2_1000", "sst2_2000")
# The plans users ask about, under the protocol's names (depth:k freezes the embeddings and blocks 0..k-1),
# so the oracle sweep's runs are reused; the report shows the names users type.
PLANS = {"full": "full", "depth:6": "head_only", "depth:3": "lower_half", "alternate": "alternate",
         "depth:4": "top_k:2", "lora:r=8": "lora:r=8", "auto": "auto"}
# The schedules, each phase a sixth (LIFT) or seventh (gradual unfreezing) of the run's steps.
SCHEDULES = ("lift", "gradual_unfreeze", "lisa:2", "hft", "autofreeze")
# To keep the run near an hour on 2 CPU cores: 2,000 rows at two seeds, the schedules at 1,000 rows and one seed.
SEEDS = {"sst2_2000": [0, 1]}
SCHEDULE_SIZES = ("sst2_1000",)
SCHEDULE_SEEDS = [0]

log = logging.getLogger("freezetune")


def custrev() -> Path:
    """custrev as a TSV with SST-2's columns (sentence, label)."""
    target = protocol.CACHE / "custrev.tsv"
    if not target.is_file():
        lines = [line.split(" ", 1) for line in CUSTREV.read_text(encoding="latin-1").splitlines() if line.strip()]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("sentence\tlabel\n" + "".join(f"{text.strip()}\t{label}\n" for label, text in lines))
    return target


def schedule_specs(key: str) -> dict[str, str]:
    entry = protocol.task(key)
    steps = entry["epochs"] * -(-entry["rows"] // protocol.PROTOCOL["batch_size"])
    interval = max(2, steps // 10)
    return {f"lift:steps={max(1, steps // 6)}": "lift", f"gradual_unfreeze:steps={max(1, steps // 7)}":
            "gradual_unfreeze", f"lisa:2:interval={interval}": "lisa:2", "hft:epochs=1": "hft",
            f"autofreeze:interval={interval}:tolerance=0.1": "autofreeze"}


def run(key: str, spec: str, name: str, seeds: list[int], ood: Path) -> dict:
    """One plan at one size, every seed; committed to bench/results/runs/ as soon as it is done."""
    base = protocol.base_spec(key)
    base = replace(base, data=replace(base.data, ood_set=[f"custrev={os.path.relpath(ood, protocol.ROOT)}"]))
    row = run_sweep(Sweep(strategies=[spec], base=base, seeds=seeds, output=str(WORK / key),
                          runs=str(protocol.STORE / key)))[0]
    protocol.harvest(key)
    return {**row, "strategy": name, "protocol_spec": spec, "train_size": protocol.task(key)["rows"]}


def save(rows: list[dict]) -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    settings = {"sizes": SIZES, "ood_set": "custrev", "machine": machine()}
    (WORK / "results.json").write_text(json.dumps({"rows": rows, "sweep": settings}, indent=1, default=str) + "\n")


def screenshot(report: Path, target: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        log.info("no chromium: no screenshot")
        return
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1280,4200",
                    "--host-resolver-rules=MAP * ~NOTFOUND", f"--screenshot={target}", report.as_uri()],
                   capture_output=True, timeout=300, check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=protocol.PROTOCOL["seeds"])
    parser.add_argument("--report-only", action="store_true", help="rebuild the report from the finished runs")
    args = parser.parse_args()
    if not CUSTREV.is_file():
        print(f"skipped: {CUSTREV} is absent", file=sys.stderr)
        return 0
    protocol.log_progress()
    if not args.report_only:
        ood = custrev()
        for key in SIZES:
            log.info("%s: %d runs moved to their current folders, %d restored", key, protocol.adopt(key),
                     protocol.restore(key))
        # The plans users ask about at every size first, then the schedules: a cut-short run still has curves.
        work = [(key, PLANS, SEEDS.get(key, args.seeds)) for key in SIZES]
        work += [(key, schedule_specs(key), SCHEDULE_SEEDS) for key in SCHEDULE_SIZES]
        rows: list[dict] = []
        for key, plans, seeds in work:
            for spec, name in plans.items():
                rows.append(run(key, spec, name, seeds, ood))
                save(rows)  # after every plan: --report-only works on whatever finished
    files = build_report(WORK)
    OUT.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(OUT / "plots", ignore_errors=True)
    shutil.copytree(WORK / "plots", OUT / "plots")
    for name in ("report.html", "report.md", "results.json"):
        shutil.copy(WORK / name, OUT / name)
    screenshot(OUT / "report.html", OUT / "report.png")
    log.info("report: %s", files.html)
    return 0


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} (CPU only)"


if __name__ == "__main__":
    sys.exit(main())
