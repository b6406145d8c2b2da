"""Does a rate grid change which plan is best? (the protocol's oracle trains each plan at its default rate)

For each task, the plans train at their default rate × 1/3 and × 3 as well (the grid of
`compare --lr-grid auto`), 3 seeds; per plan and seed the rate with the best validation metric is
kept, as a user's `compare --lr-grid auto` would keep it. The default-rate runs are the protocol
sweep's (bench/results/runs/<task>/); the others are this study's own
(bench/results/runs/<task>@rates/, so the protocol's readers still see one rate per plan).
Where the grid changes the best plan, the protocol lists the task under `rate_grid:` and
bench/regret.py's oracle picks each plan's rate the same way.

Reported per task: each plan's test metric at its default rate and at the rate picked on
validation, the factors picked, the oracle with and without the grid, and each selector's regret
(its committed choices, trained at the default rate as `auto` trains them) against both.

    nice -n 5 .venv/bin/python bench/rate_grid.py --tasks sst2_100                     # every plan
    nice -n 5 .venv/bin/python bench/rate_grid.py --tasks sst2_2000 --plans depth:0 depth:1 depth:2 depth:4
    .venv/bin/python bench/rate_grid.py --report-only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys

import protocol
import regret
import torch

RESULTS = protocol.ROOT / "bench" / "results"
OUT = RESULTS / "rate_grid.md"
STATE = RESULTS / "rate_grid.json"  # which tasks, plans and seeds were studied (the report is rebuilt from it)
FACTORS = (1 / 3, 3.0)
P = protocol.PROTOCOL


def train(key: str, plans: list[str], seeds: list[int]) -> None:
    protocol.rate_picked(key, plans, seeds)  # says so when the protocol sweep has not trained a plan yet
    defaults = regret.by_plan(key)
    for plan in plans:
        rate = defaults[plan][seeds[0]]["lr"]
        grid = ",".join(str(round(rate * f, 8)) for f in FACTORS)  # as compare --lr-grid auto writes them
        protocol.sweep(key, [plan], seeds, lr_grid=grid, shelf=protocol.rate_shelf(key))


def judge(key: str, plans: list[str], seeds: list[int]) -> dict:
    metric = P["tasks"][key]["metric"]
    picked, defaults = protocol.rate_picked(key, plans, seeds), regret.by_plan(key)
    rows = {p: {"rate": defaults[p][seeds[0]]["lr"],
                "default": {s: protocol.metric(defaults[p][s], metric) for s in seeds},
                "picked": {s: {"lr": picked[p][s]["lr"], "factor": picked[p][s]["lr"] / defaults[p][s]["lr"],
                               "test": protocol.metric(picked[p][s], metric)} for s in seeds}} for p in plans}
    mean_default = {p: statistics.fmean(rows[p]["default"].values()) for p in plans}
    mean_grid = {p: statistics.fmean(v["test"] for v in rows[p]["picked"].values()) for p in plans}
    oracle, oracle_grid = max(plans, key=mean_default.get), max(plans, key=mean_grid.get)
    chosen = regret.selections_stored(key, P["seeds"]) or {}
    selectors = {}
    for name, by_seed in chosen.items():
        if all(by_seed[s]["plan"] in plans for s in seeds):
            at_default = [rows[by_seed[s]["plan"]]["default"][s] for s in seeds]
            selectors[name] = {
                "plans": [by_seed[s]["plan"] for s in seeds],
                "regret": statistics.fmean(rows[oracle]["default"][s] - v for s, v in zip(seeds, at_default)),
                "regret_grid": statistics.fmean(rows[oracle_grid]["picked"][s]["test"] - v
                                                for s, v in zip(seeds, at_default)),
            }
    return {"key": key, "metric": metric, "seeds": seeds, "rows": rows, "mean_default": mean_default,
            "mean_grid": mean_grid, "oracle": oracle, "oracle_grid": oracle_grid, "selectors": selectors}


def section(j: dict) -> str:
    metric, plans = j["metric"], list(j["rows"])
    rank_default = sorted(plans, key=j["mean_default"].get, reverse=True)
    rank_grid = sorted(plans, key=j["mean_grid"].get, reverse=True)
    lines = [f"## {P['tasks'][j['key']]['name']} (test {metric}, seeds {', '.join(map(str, j['seeds']))})", "",
             "| plan | default rate | test at the default rate | rate factor picked on validation, per seed "
             "| test at the picked rate |", "| --- | --- | --- | --- | --- |"]
    for p in rank_default:
        row = j["rows"][p]
        factors = " / ".join(f"×{v['factor']:.3g}" for v in row["picked"].values())
        lines.append(f"| {p} | {row['rate']:g} | {j['mean_default'][p]:.3f} | {factors} | {j['mean_grid'][p]:.3f} |")
    changed = rank_default[0] != rank_grid[0]
    lines += ["", f"Oracle at the default rates: **{j['oracle']}** ({j['mean_default'][j['oracle']]:.3f}); with the "
              f"grid: **{j['oracle_grid']}** ({j['mean_grid'][j['oracle_grid']]:.3f}). Ranking at the default rates: "
              f"{', '.join(rank_default)}; with the grid: {', '.join(rank_grid)}. "
              + ("The grid changes the best plan." if changed else "The grid does not change the best plan.")]
    if j["selectors"]:
        lines += ["", "| selector (trains its choice at the default rate) | chose | regret, default-rate oracle "
                  "| regret, grid oracle |", "| --- | --- | --- | --- |"]
        for name, v in j["selectors"].items():
            lines.append(f"| {name} | {' / '.join(v['plans'])} | {100 * v['regret']:+.1f} | "
                         f"{100 * v['regret_grid']:+.1f} |")
    return "\n".join(lines)


def report(studied: dict[str, dict]) -> str:
    judged = [judge(key, s["plans"], s["seeds"]) for key, s in studied.items()]
    header = (f"# Does a rate grid change which plan is best?\n\nMachine: {platform.machine()}, torch "
              f"{torch.__version__}, fp32, {os.cpu_count()} CPU cores. Command: `nice -n 5 .venv/bin/python bench/rate_grid.py` "
              f"(per task below). Protocol: `bench/protocol.yaml`; each plan at its default rate × 1/3, 1, 3, the "
              f"rate picked per seed on the 500 validation rows (`compare --lr-grid auto`). Regret in points.\n")
    return header + "\n" + "\n\n".join(section(j) for j in judged) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["sst2_100"],
                        choices=[k for k, t in P["tasks"].items() if t.get("task") != "causal-lm"])
    parser.add_argument("--plans", nargs="+", default=P["plans"], choices=P["plans"],
                        help="plans of the protocol to study")
    parser.add_argument("--seeds", nargs="+", type=int, default=P["seeds"])
    parser.add_argument("--report-only", action="store_true", help="rewrite the report from what is committed")
    args = parser.parse_args()
    studied = json.loads(STATE.read_text()) if STATE.is_file() else {}
    if not args.report_only:
        if not protocol.SHARED.is_dir():
            print(f"skipped: {protocol.SHARED} is absent", file=sys.stderr)
            return 0
        protocol.log_progress()
        for key in args.tasks:
            train(key, args.plans, args.seeds)
            studied[key] = {"plans": args.plans, "seeds": args.seeds}
            STATE.write_text(json.dumps(studied, indent=1) + "\n")
            OUT.write_text(report(studied))  # after every task, so a long run shows what it has
    if not studied:
        print("no task studied yet", file=sys.stderr)
        return 0
    OUT.write_text(report(studied))
    print(OUT.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
