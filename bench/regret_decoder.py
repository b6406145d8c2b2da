"""The decoder task of the regret report: SmolLM2-135M answering SST-2 as text (bench/protocol.yaml,
``smollm2_sst2_500``). Its oracle is the plan grid bench/causal_lm.py trained (bench/results/causal_lm.md).

``auto``'s choice per seed is made by the function ``auto`` calls (scoring/cheapest.choose) on the
gradient scores bench/freeze_signals.py stored for that seed (the seed's 256-row sample, as a run
draws it), the run's 500 training and 100 validation rows and its selection metric, exact match. The
stored "auto" runs are the best-metric objective's choice (all 30 blocks, depth:0).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from types import SimpleNamespace

import protocol

from freezetune.measure.costs import waited_s
from freezetune.scoring.cheapest import choose
from freezetune.scoring.result import LayerScores
from freezetune.scoring.select import data_support

KEY = "smollm2_sst2_500"
SIGNALS = Path(__file__).resolve().parent / "results" / "signals" / KEY
BLOCKS = 30
# the grid's plans as frozen-prefix depths where they are one (lower_half = 15 frozen, top_k:8 = 22)
DEPTH_OF = {"auto": 0, "lower_half": 15, "top_k:8": 22}
NAME = {"auto": "depth:0 (all 30 blocks; auto:objective=metric)", "lower_half": "lower_half (depth:15)",
        "top_k:8": "top_k:8 (depth:22)"}


def _grid() -> dict | None:
    runs: dict[str, dict[int, dict]] = {}
    for run in protocol.committed(KEY):
        runs.setdefault(run["strategy"], {})[run["seed"]] = run
    if "full" not in runs:
        return None
    seeds = sorted(runs["full"])
    full = statistics.fmean(waited_s(runs["full"][s]["summary"]) for s in seeds)
    plans = {}
    for plan, by_seed in runs.items():
        values = [by_seed[s]["test"]["exact_match"] for s in seeds if s in by_seed]
        plans[NAME.get(plan, plan)] = {
            "mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
            "share": statistics.fmean(waited_s(by_seed[s]["summary"]) for s in by_seed) / full,
            "depth": DEPTH_OF.get(plan)}
    return {"plans": plans, "seeds": seeds, "full_s": full}


def _choices(seeds: list[int], full_s: float) -> dict[int, dict] | None:
    out = {}
    for seed in seeds:
        path = SIGNALS / f"seed{seed}.json"
        if not path.is_file():
            return None
        saved = json.loads(path.read_text())
        scores = LayerScores.from_dict(saved["gradient"])
        layers = SimpleNamespace(num_blocks=BLOCKS)  # choose reads the block count only when no budget is given
        picked = choose(scores, layers, support=data_support(scores, saved["rows"]),
                        validation_rows=saved["validation_rows"], metric="exact_match")
        out[seed] = {"depth": picked.depth, "tied": picked.tied, "noise": picked.noise,
                     "selection_share": scores.seconds / full_s}
    return out


def plot_data() -> dict | None:
    grid = _grid()
    if grid is None:
        return None
    chosen = _choices(grid["seeds"], grid["full_s"]) or {}
    selectors = {}
    for seed, c in chosen.items():
        plan = next((p for p, row in grid["plans"].items() if row["depth"] == c["depth"]), None)
        if plan is not None:
            row = grid["plans"][plan]
            selectors.setdefault(f"auto → {plan}", {"mean": row["mean"], "share": row["share"] + c["selection_share"]})
    return {"task": protocol.task(KEY)["name"], "plans": grid["plans"], "selectors": selectors, "chosen": chosen}


def section() -> list[str]:
    data = plot_data()
    if data is None:
        return []
    plans, chosen = data["plans"], data["chosen"]
    best = max(plans, key=lambda p: plans[p]["mean"])
    lines = ["", f"## {data['task']} (the decoder task)", "",
             "| plan | exact match (test, mean ± sd over seeds) | cost share of full (stored runs) |", "| --- | --- | --- |"]
    for plan, row in sorted(plans.items(), key=lambda kv: -kv[1]["mean"]):
        lines.append(f"| {plan} | {100 * row['mean']:.1f} ± {100 * row['sd']:.1f}{' (best)' if plan == best else ''} "
                     f"| {row['share']:.2f} |")
    if not chosen:
        return lines + ["", "auto's choice: the gradient scores are not stored yet (bench/freeze_signals.py)."]
    depths = sorted({c["depth"] for c in chosen.values()})
    lines += ["", "auto (default objective) chose per seed: " + ", ".join(
        f"seed {s}: depth:{c['depth']} (within noise: depths {c['tied'][0]}–{c['tied'][-1]}, noise "
        f"{c['noise']:.1f} points on 100 validation rows)" for s, c in chosen.items()) + "."]
    for depth in depths:
        plan = next((p for p, row in plans.items() if row["depth"] == depth), None)
        if plan is None:
            lines.append(f"- depth:{depth} has no stored run: not judged (bench/causal_lm.py would train it).")
            continue
        row, top = plans[plan], plans[best]
        gap = 100 * (top["mean"] - row["mean"])
        noise = 100 * max(row["sd"], top["sd"])
        share = row["share"] + statistics.fmean(c["selection_share"] for c in chosen.values())
        lines.append(f"- {plan}: {gap:+.1f} points from the best plan ({best}); seed sd {noise:.1f} points: "
                     f"{'within' if gap <= noise else 'outside'} seed noise; cost {share:.2f} of full with the "
                     f"selection (gradient scoring timed on 2 shared cores) "
                     f"{'PASS' if gap <= noise and share <= 0.6 else 'MISS'} (within seed noise at ≤ 0.6)")
    return lines
