"""The protocol's plans ranked by the time a user waits, re-derived from the committed run summaries.

A plan's cost is training + frozen-prefix cache build + the selection's scoring (DESIGN.md, "Cost").
Tables that ranked by training time alone put cached plans too early: `head_only` trains in about a
second after a cache build ten times as long. The sweep builds a plan's cache once and its later seeds
reuse it (their build reads ~0.1 s), so each seed is charged the largest build measured for that plan:
what a lone run of it waits for.

    .venv/bin/python bench/time_waited.py       # reads bench/results/runs/, writes bench/results/time_waited.md
"""

from __future__ import annotations

import json
import re
import statistics
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "bench" / "results" / "runs"
OUT = ROOT / "bench" / "results" / "time_waited.md"


def plans(task_dir: Path) -> dict[str, list[dict]]:
    found = defaultdict(list)
    for file in sorted(task_dir.glob("*.json")):
        plan = re.sub(r"-seed\d+-lr[^-]+\.json$", "", file.name)
        found[plan].append(json.loads(file.read_text())["summary"])
    return found


def waited(runs: list[dict]) -> dict[str, float]:
    build = max(r.get("cache_build_s") or 0.0 for r in runs)  # a lone run builds what the sweep shared
    train = statistics.fmean(r["train_time_s"] for r in runs)
    scoring = statistics.fmean(r.get("scoring_s") or 0.0 for r in runs)
    return {"train": train, "cache": build, "scoring": scoring, "total": train + build + scoring}


def table(task: str, by_plan: dict[str, list[dict]]) -> list[str]:
    costs = {plan: waited(runs) for plan, runs in by_plan.items()}
    full = costs.get("full", {}).get("total")
    lines = [f"### {task}", "", "| plan | seeds | time waited | train | cache build | scoring | share of full | "
             "rank by train alone |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    by_train = {p: i + 1 for i, p in enumerate(sorted(costs, key=lambda p: costs[p]["train"]))}
    for plan in sorted(costs, key=lambda p: costs[p]["total"]):
        c = costs[plan]
        share = f"{c['total'] / full:.2f}" if full else "-"
        lines.append(f"| {plan} | {len(by_plan[plan])} | {c['total']:.1f} s | {c['train']:.1f} s | {c['cache']:.1f} s | "
                     f"{c['scoring']:.1f} s | {share} | {by_train[plan]} |")
    return [*lines, ""]


def main() -> None:
    lines = ["# Time waited per plan, from the committed runs", "",
             "Re-derived by `bench/time_waited.py` from `bench/results/runs/*/` (each run's own summary; 2-core "
             "x86_64 CPU, torch 2.13, fp32, as measured by the protocol's sweeps). Ranked by training + cache build + "
             "scoring; the last column is the rank training time alone gave. Seeds share one cache build in a "
             "sweep, so each is charged the largest build measured for its plan.", ""]
    for task_dir in sorted(p for p in RUNS.iterdir() if p.is_dir() and "@" not in p.name):
        lines += table(task_dir.name, plans(task_dir))
    OUT.write_text("\n".join(lines))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
