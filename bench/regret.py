"""Selection regret on the shared protocol (bench/protocol.yaml): does ``auto`` pick what a full sweep would?

For each task the oracle sweep trains every plan of the protocol (full, depth:0..6, alternate,
LoRA) at its default rate, 3 seeds (bench/protocol.py; finished runs are reused from the
committed store). Then every selector chooses once per seed, exactly as a user's run would (the
seed's model and head, the seed's 256-row sample; the race also trains on the training data and
ranks on the validation rows), and its choice is looked up in the sweep: no extra training.
Each choice is committed under bench/results/selections/<task>/ and reused on a rerun.

Reported per task and selector: the chosen plans, regret against the plain oracle (the plan with
the best mean test metric) and against the retention-constrained oracle (best plan whose mean
STS-B after training is >= the floor), each as the mean of paired per-seed differences with
their standard deviation, and the cost share: the chosen plan's waited time (training + cache build)
plus the selection's, over full fine-tuning's on the task (bench/regret_cost.py), with the frontier of the
oracle that takes the cheapest plan within 0.5 point of the best; the decoder task beside
(bench/regret_decoder.py).
A choice that breaks the floor is charged as if the user fell back to head_only (which never
changes the encoder). The fixed rules (always full, depth:1, depth:2, lower_half, top_k:2) are
the baselines. A task whose best plan stays below the protocol's Matthews correlation on test
is degenerate: it is listed, and left out of the means.

    nice -n 5 .venv/bin/python bench/regret.py                      # every task (trains what is missing)
    .venv/bin/python bench/regret.py --tasks sst2_1000 cola_2000    # some
    .venv/bin/python bench/regret.py --report-only                  # rewrite the tables from what is stored
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import protocol
import regret_cost
import regret_decoder
import torch

from freezetune.core.layout import LayerMap
from freezetune.core.model import load_tokenizer
from freezetune.measure.costs import waited_s
from freezetune.runs.run import Retention, RunCaches, load_data, load_model, resolve_for_run
from freezetune.strategies.registry import resolve
from freezetune.tasks.classification import SequenceClassification

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SELECTIONS = RESULTS / "selections"
P = protocol.PROTOCOL
FLOOR = P["retention"]["floor"]
# auto = auto:gradient with the default objective, the cheapest plan within noise of the best; beside it
# the best-metric objective (the default before) with every scorer, and the race. Their choices are
# looked up in the sweep.
SELECTORS = ["auto", "auto:objective=metric", "auto:fisher:objective=metric", "auto:snr:objective=metric",
             "auto:semantic:objective=metric", "auto:variability:objective=metric", "auto:method=race"]
# A retention floor changes how the chosen plan trains (the run keeps the best evaluation that keeps
# the floor), so these are judged on runs of their own, 3 seeds like every plan.
TRAINED = ["auto:retention=0.8", "auto:objective=metric:retention=0.8"]
# The version of each selector's code: a stored choice made by another version is made again.
# race 6: ranks by validation loss where the metric does not tell candidates apart; auto 7: the cheapest objective
VERSIONS = {"auto:method=race": 6, "auto": 7}
VERSION = 5  # every other selector (the best-metric objective's choices are those made before it had a name)
RULES = {f"always {'lower_half' if r == 'depth:3' else 'top_k:2' if r == 'depth:4' else r}": r for r in P["rules"]}
log = logging.getLogger("freezetune")


# ---------------------------------------------------------------------- measuring
def selections(key: str, seeds: list[int]) -> dict[str, dict[int, dict]]:
    """Every selector's choice per seed, made as a user's run would make it (committed, reused)."""
    folder = SELECTIONS / key
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, dict[int, dict]] = {s: {} for s in SELECTORS}
    missing = []
    for selector in SELECTORS:
        for seed in seeds:
            path, saved = stored_choice(key, selector, seed)
            if saved:
                out[selector][seed] = saved
            else:
                missing.append((selector, seed, path))
    if not missing:
        return out
    base = protocol.base_spec(key)
    tokenizer = load_tokenizer(base.model.model)
    data = load_data(base, tokenizer)
    task = SequenceClassification(data.label_names)
    caches = RunCaches()
    layers = LayerMap.from_model(load_model(base, task))
    # what a selector may choose, as the sweep names it (auto falls back to LoRA when the data supports no block)
    named = {f"depth:{d}": resolve(f"depth:{d}", layers) for d in range(layers.num_blocks + 1)}
    named["lora:r=8"] = resolve("lora:r=8", layers)
    for selector, seed, path in missing:
        spec = replace(base, strategy=selector, train=replace(base.train, seed=seed))
        model = load_model(spec, task)
        retention = Retention(spec, model, tokenizer, caches.retention_before)
        started = time.perf_counter()
        resolution = resolve_for_run(spec, model, task, data, tokenizer, caches, retention)
        seconds = time.perf_counter() - started
        plan = next((name for name, p in named.items() if p == resolution.strategy), resolution.strategy.spec)
        saved = {"fingerprint": protocol.fingerprint(key), "version": VERSIONS.get(selector, VERSION),
                 "selector": selector, "seed": seed,
                 "plan": plan,
                 "seconds": seconds, "explanation": "\n".join(s["explanation"] for s in resolution.selections)}
        path.write_text(json.dumps(saved, indent=1) + "\n")
        log.info("%s seed %d: %s chose %s in %.1f s", key, seed, selector, plan, seconds)
        out[selector][seed] = saved
    return out


# ---------------------------------------------------------------------- judging
def by_plan(key: str) -> dict[str, dict[int, dict]]:
    runs: dict[str, dict[int, dict]] = {}
    for run in protocol.committed(key):
        runs.setdefault(run["strategy"], {})[run["seed"]] = run
    return runs


def judge(key: str, seeds: list[int], chosen: dict[str, dict[int, dict]]) -> dict:
    entry = protocol.task(key)
    runs = by_plan(key)
    value = {p: {s: protocol.metric(r, entry["metric"]) for s, r in runs[p].items()} for p in P["plans"]}
    sts = {p: {s: r["summary"].get("retention_after") for s, r in runs[p].items()} for p in P["plans"]}
    value.update({name: {} for name in TRAINED})
    sts.update({name: {} for name in TRAINED})
    # The oracle's candidates: every plan at its default rate and, where the protocol lists a rate grid, every
    # plan again at the rate picked on validation ("<plan>@best"). Selectors and rules train at the default rate.
    candidates = {p: runs[p] for p in P["plans"]}
    if key in P.get("rate_grid", []):
        candidates.update({f"{p}@best": r for p, r in protocol.rate_picked(key, P["plans"], seeds).items()})
    cand_value = {c: {s: protocol.metric(r[s], entry["metric"]) for s in seeds} for c, r in candidates.items()}
    cand_mean = {c: statistics.fmean(v.values()) for c, v in cand_value.items()}
    cand_sts = {c: statistics.fmean(r[s]["summary"].get("retention_after") for s in seeds)
                for c, r in candidates.items()}
    oracle = max(candidates, key=cand_mean.get)
    oracle_c = max((c for c in candidates if cand_sts[c] >= FLOOR), key=cand_mean.get)
    mcc = statistics.fmean(candidates[oracle][s]["test"]["mcc"] for s in seeds)
    # cost: what the user waits for (training + cache build + selection), as a share of full's on this task
    plan_s = regret_cost.plan_seconds(runs, P["plans"], seeds)
    one_run = plan_s["full"]
    share = {p: {s: waited_s(runs[p][s]["summary"]) / one_run for s in seeds} for p in P["plans"]}

    def verdict(name: str, plans: dict[int, str], seconds: float) -> dict:
        plain = [cand_value[oracle][s] - value[plans[s]][s] for s in seeds]
        # a choice that breaks the floor on its seed counts as the user's fallback, head_only
        counted = {s: value[plans[s]][s] if sts[plans[s]][s] >= FLOOR else value["depth:6"][s] for s in seeds}
        constrained = [cand_value[oracle_c][s] - counted[s] for s in seeds]
        plan_share = statistics.fmean(share[plans[s]][s] for s in seeds) if plans[seeds[0]] in share else 0.0
        return {"selector": name, "plans": [plans[s] for s in seeds], "selection_share": seconds / one_run,
                "cost_share": plan_share + seconds / one_run,
                "regret": statistics.fmean(plain), "regret_sd": statistics.stdev(plain),
                "regret_c": statistics.fmean(constrained), "regret_c_sd": statistics.stdev(constrained),
                "breaks_floor": sum(sts[plans[s]][s] < FLOOR for s in seeds)}

    verdicts = [verdict(name, {s: chosen[name][s]["plan"] for s in seeds},
                        statistics.fmean(chosen[name][s]["seconds"] for s in seeds)) for name in chosen]
    for name in TRAINED:  # judged on their own runs: their plan and the evaluation they kept
        own = runs.get(name, {})
        if any(s not in own for s in seeds):
            continue  # not run on this task yet: the report says so
        for s in seeds:
            value[name][s], sts[name][s] = protocol.metric(own[s], entry["metric"]), own[s]["summary"]["retention_after"]
        seconds = statistics.fmean(selection_seconds(own[s]) for s in seeds)
        # every attempt is in train_time_s, the scoring in scoring_s; the guard's measurements come on top
        waited = statistics.fmean(waited_s(own[s]["summary"]) + (own[s].get("retention_guard") or {}).get("seconds", 0)
                                  for s in seeds)
        verdicts.append({**verdict(name, {s: name for s in seeds}, seconds), "cost_share": waited / one_run,
                         "plans": [trained_label(own[s], runs["depth:5"][s], runs["depth:6"][s]) for s in seeds],
                         "train_time_s": statistics.fmean(own[s]["summary"]["train_time_s"] for s in seeds)})
    verdicts += [verdict(name, {s: plan for s in seeds}, 0.0) for name, plan in RULES.items()]
    ranked = sorted(candidates, key=cand_mean.get, reverse=True)
    return {
        "key": key, "task": entry["name"], "metric": entry["metric"], "degenerate": mcc < P["degenerate_mcc"],
        "plans": {p: {"mean": cand_mean[p], "sd": statistics.stdev(value[p][s] for s in seeds), "sts": cand_sts[p],
                      "train_time_s": statistics.fmean(runs[p][s]["summary"]["train_time_s"] for s in seeds),
                      "share": plan_s[p] / one_run} for p in P["plans"]},
        "default_means": {p: cand_mean[p] for p in P["plans"]}, "shares": {p: plan_s[p] / one_run for p in P["plans"]},
        "oracle_mean": cand_mean[oracle],
        "best_rate": {p: {"mean": cand_mean[f"{p}@best"], "sts": cand_sts[f"{p}@best"],
                          "factors": [candidates[f"{p}@best"][s]["lr"] / runs[p][s]["lr"] for s in seeds]}
                      for p in P["plans"] if f"{p}@best" in candidates},
        "oracle": oracle, "oracle_sd": statistics.stdev(cand_value[oracle][s] for s in seeds),
        "oracle_margin": cand_mean[oracle] - cand_mean[ranked[1]], "oracle_c": oracle_c, "one_run_s": one_run,
        "verdicts": verdicts,
    }


# ---------------------------------------------------------------------- reporting
def report(results: dict) -> str:
    tasks = results["tasks"]
    counted = [t for t in tasks if not t["degenerate"]]
    lines = [
        "# Where to fine-tune: selection regret on the shared protocol", "",
        f"Machine: {results['machine']}. Command: `{results['command']}`. Protocol: `bench/protocol.yaml` "
        f"(all-MiniLM-L6-v2, max length {P['max_length']}, batch {P['batch_size']}, each plan's default rate, "
        f"seeds {P['seeds']}; validation = {P['validation_rows']} other training rows; test = GLUE dev, tweets: a "
        f"disjoint seeded split). Retention: STS-B Spearman on {P['retention']['limit']} pairs (0.867 before), "
        f"floor {FLOOR}.", "",
        f"Tasks measured: {', '.join(t['task'] for t in tasks)}"
        + (f"; degenerate (best plan's test MCC < {P['degenerate_mcc']}), left out of the means: "
           + ", ".join(t["task"] for t in tasks if t["degenerate"]) if any(t["degenerate"] for t in tasks) else "")
        + ". Tasks of the protocol not yet measured: "
        + (", ".join(protocol.task(k)["name"] for k in P["order"] if k not in {t["key"] for t in tasks}) or "none")
        + ".", "",
        "## Every plan (test metric mean ± sd over seeds / STS-B after)", "",
        "| plan | " + " | ".join(f"{t['task']} ({t['metric']})" for t in tasks) + " |",
        "|" + " --- |" * (len(tasks) + 1),
    ]
    for plan in P["plans"]:
        cells = []
        for t in tasks:
            row, best = t["plans"][plan], t.get("best_rate", {}).get(plan)
            cell = f"{marked(t, plan, row['mean'])} ± {row['sd']:.3f} / {row['sts']:.2f}"
            if best:
                factors = "/".join(f"×{f:.2g}" for f in best["factors"])
                cell += f"; at {factors}: {marked(t, plan + '@best', best['mean'])} / {best['sts']:.2f}"
            cells.append(cell)
        lines.append(f"| {plan} | " + " | ".join(cells) + " |")
    lines += [
        "", "Bold: the oracle; underlined: the constrained oracle (STS-B ≥ floor)."
        + (" On " + ", ".join(t["task"] for t in tasks if t.get("best_rate")) + " a rate grid changes the best plan "
           "(bench/results/rate_grid.md): there every plan also trained at ×1/3 and ×3 its default rate and kept the "
           "rate picked on validation, per seed (the factors after \"at\"); the oracle is the best of these and "
           "the default-rate plans. Selectors and rules train at the default rate, as a user's run does."
           if any(t.get("best_rate") for t in tasks) else "")
        + " The oracle is the maximum of "
        "noisy means: " + "; ".join(f"{t['task']}: sd {100 * t['oracle_sd']:.1f} points, "
                                    f"{100 * t['oracle_margin']:.1f} above the runner-up" for t in tasks) + ".",
        "", "## Choices, regret (points of the task metric) and cost", "",
        "| selector | " + " | ".join(t["task"] for t in tasks)
        + " | mean regret | mean constrained regret | mean cost share (of which selection) |",
        "|" + " --- |" * (len(tasks) + 4),
    ]
    summary = summaries(results)
    for name, (mean, spread, mean_c, chose, cost) in summary.items():
        picked = [next((v for v in t["verdicts"] if v["selector"] == name), None) for t in tasks]
        used = [v for v, t in zip(picked, tasks) if v is not None and not t["degenerate"]]
        cells = [f"{'/'.join(short(p) for p in v['plans'])} {100 * v['regret']:+.1f} / {100 * v['regret_c']:+.1f}"
                 f" @{v['cost_share']:.2f}" + (f" ✗{v['breaks_floor']}" if v["breaks_floor"] else "")
                 if v is not None else "not run" for v in picked]
        counted_here = sum(not t["degenerate"] for t in tasks)
        over = f" ({len(used)} of {counted_here} tasks)" if len(used) < counted_here else ""
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {mean:.2f} ± {spread:.2f}{over} | {mean_c:.2f}{over} "
                     f"| {cost:.2f} ({chose:.3f}) |")
    used = [t for t in tasks if not t["degenerate"]]
    frontier = {tol: (r, c) for tol, r, c in regret_cost.frontier(used)} if used else {}
    picks = [regret_cost.cheapest_within(t["default_means"], t["shares"], regret_cost.TOLERANCE / 100) for t in used]
    if used:
        lines.append(f"| oracle: cheapest plan within {regret_cost.TOLERANCE} point of the best (no selection cost) | "
                     + " | ".join(f"{short(p)} @{t['shares'][p]:.2f}" for p, t in zip(picks, used))
                     + f" | {frontier[regret_cost.TOLERANCE][0]:.2f} | | {frontier[regret_cost.TOLERANCE][1]:.2f} |")
    lines += [
        "", "Cell: the plan chosen for each seed (d = depth, the frozen prefix; d0 = all blocks; d6 = head only), "
        "regret against the oracle / against the constrained oracle (✗n: n seeds broke the floor, counted as "
        "head_only), @ the cost share: the chosen plan's waited time (training + cache build, stored runs) plus the "
        "selection's seconds, over full fine-tuning's on the task (times from 2 shared cores: inflated, alike for "
        "every plan). ± is the standard deviation of the paired per-seed differences, averaged over tasks. The "
        "oracle row knows every plan's test mean; on its own it has no selection cost. The oracle's frontier over "
        "tolerances t (regret, cost): " + ", ".join(f"t={t:g}: {r:.2f}, {c:.2f}" for t, (r, c) in frontier.items()
                                                  if t in (0, 0.5, 1, 2, 3, 5)) + ".",
        "", "## Targets (non-degenerate tasks)", "",
    ]
    rules = {n: v for n, v in summary.items() if n.startswith("always")}
    if "auto" in summary:
        mean, _, mean_c, chose, cost = summary["auto"]
        oracle_cost = frontier.get(regret_cost.TOLERANCE, (0, float("nan")))[1]
        better = [n for n, v in rules.items() if v[4] < cost and v[0] < mean]
        lines += [
            f"- auto (default): regret {mean:.2f} {'PASS' if mean <= 0.5 else 'MISS'} (≤ 0.5); cost {cost:.2f} of full "
            f"{'PASS' if cost <= 0.65 else 'MISS'} (≤ 0.65, selection included: {chose:.3f}); distance to the "
            f"zero-selection-cost oracle within {regret_cost.TOLERANCE} point ({oracle_cost:.2f}): {cost - oracle_cost:+.2f}",
            "- fixed rules both cheaper and better than auto: " + (", ".join(better) if better else "none") + " "
            + ("PASS" if not better else "MISS"),
        ]
    if "auto:retention=0.8" in summary:
        mean, _, mean_c, chose, cost = summary["auto:retention=0.8"]
        lines.append(f"- auto:retention=0.8: constrained regret {mean_c:.2f} {'PASS' if mean_c <= 0.5 else 'MISS'} "
                     f"(≤ 0.5); cost with retries {cost:.2f} of full {'PASS' if cost <= 1 else 'MISS'} (≤ 1)")
    if not counted:
        lines.append("- no non-degenerate task yet: no target can be judged")
    lines += regret_decoder.section()
    return "\n".join(lines) + "\n"


def summaries(results: dict) -> dict[str, tuple[float, float, float, float, float]]:
    """Per selector and rule over the non-degenerate tasks: mean regret, its paired spread, mean constrained
    regret, mean selection share and mean cost share (selection included)."""
    tasks = results["tasks"]
    out = {}
    for name in dict.fromkeys(v["selector"] for t in tasks for v in t["verdicts"]):
        used = [v for t in tasks if not t["degenerate"] for v in t["verdicts"] if v["selector"] == name]
        mean = lambda key, scale=100: statistics.fmean(scale * v[key] for v in used) if used else float("nan")  # noqa: E731
        out[name] = (mean("regret"), mean("regret_sd"), mean("regret_c"), mean("selection_share", 1),
                     mean("cost_share", 1))
    return out


def marked(task: dict, candidate: str, value: float) -> str:
    """A plan's mean, bold when it is the oracle, underlined when it is the constrained oracle."""
    text = f"{value:.3f}"
    text = f"_{text}_" if candidate == task["oracle_c"] else text
    return f"**{text}**" if candidate == task["oracle"] else text


def selection_seconds(run: dict) -> float:
    """What a guarded run spent besides training its kept plan: scoring, guard measurements, discarded attempts."""
    discarded = sum(a["train_time_s"] for a in run.get("retention_retries", []) if not a["kept"])
    return run.get("scoring_s", 0.0) + (run.get("retention_guard") or {}).get("seconds", 0.0) + discarded


def trained_label(run: dict, top_block: dict, head_only: dict) -> str:
    """A guarded run as a cell: its plan and the epoch it kept (d0·e2; lora·e9: more weights trained than the
    head alone and fewer than the top block, the depth:6 and depth:5 runs)."""
    trained = run["summary"]["trainable_params"]
    lora = head_only["summary"]["trainable_params"] < trained < top_block["summary"]["trainable_params"]
    plan = "lora" if lora else f"d{run['summary']['frozen_prefix_depth']}"
    return f"{plan}·e{run['validation']['epoch'] + 1}"


def short(plan: str) -> str:
    return plan.replace("depth:", "d").replace("alternate", "alt").replace("lora:r=8", "lora")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=P["order"], choices=list(P["tasks"]))
    parser.add_argument("--report-only", action="store_true", help="rewrite the report from what is stored")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("freezetune").setLevel(logging.INFO)
    seeds = P["seeds"]
    judged = []
    started = time.time()
    for key in args.tasks:
        if not args.report_only:
            if not protocol.SHARED.is_dir():
                print(f"skipped: {protocol.SHARED} is absent", file=sys.stderr)
                return 0
            protocol.sweep(key, P["plans"], seeds)
            chosen = selections(key, seeds)
            protocol.sweep(key, TRAINED, seeds)
        else:
            runs = by_plan(key)
            if any(len(runs.get(p, {})) < len(seeds) for p in P["plans"]):
                continue  # not measured yet (a selector judged on its own runs may be missing: "not run")
            chosen = selections_stored(key, seeds)
            if chosen is None:
                continue
        judged.append(judge(key, seeds, chosen))
        write(judged, started)  # after every task, so a long run shows what it has
    if not judged:
        print("no task of the protocol is measured yet", file=sys.stderr)
        return 0
    print(report(json.loads((RESULTS / "regret.json").read_text())))
    return 0


def write(judged: list[dict], started: float) -> None:
    results = {
        "machine": f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), torch "
                   f"{torch.__version__}, fp32",
        "command": "nice -n 5 .venv/bin/python bench/regret.py", "wall_s": time.time() - started, "tasks": judged,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "regret.json").write_text(json.dumps(results, indent=1) + "\n")
    (RESULTS / "regret.md").write_text(report(results))
    regret_cost.plot(summaries(results), [t for t in results["tasks"] if not t["degenerate"]], RESULTS / "regret.png",
                     regret_decoder.plot_data())


def stored_choice(key: str, selector: str, seed: int) -> tuple[Path, dict | None]:
    """Where a selector's choice for a seed is committed, and the choice (None: missing, or made by other code)."""
    path = SELECTIONS / key / f"{selector.replace(':', '_').replace('=', '-')}-seed{seed}.json"
    saved = json.loads(path.read_text()) if path.is_file() else None
    version = VERSIONS.get(selector, VERSION)
    current = saved and saved["fingerprint"] == protocol.fingerprint(key) and saved.get("version") == version
    return path, saved if current else None


def selections_stored(key: str, seeds: list[int]) -> dict[str, dict[int, dict]] | None:
    """Every selector's stored choice per seed, or None when one is missing or was made by other code."""
    out: dict[str, dict[int, dict]] = {}
    for selector in SELECTORS:
        for seed in seeds:
            saved = stored_choice(key, selector, seed)[1]
            if saved is None:
                return None
            out.setdefault(selector, {})[seed] = saved
    return out


if __name__ == "__main__":
    sys.exit(main())
