"""Which signal can say "freeze here"? Every candidate judged leave-one-task-out on the shared protocol.

Reads the signals bench/freeze_signals.py stored (bench/results/signals/) and the protocol's oracle
runs (bench/results/runs/). A candidate is a rule with one free constant that maps a task-seed's
signals to a plan; the constant is set on five tasks (the cheapest mean cost whose mean regret there
stays within 0.5 point; when none does, the lowest regret) and the rule is judged on the sixth, for
each task in turn. Regret: points below the oracle's mean test metric (the rate grid's oracle where
the protocol has one), paired per seed. Cost: the chosen plan's stored waited time (training + cache
build) over full's on the task, plus the selection's own seconds over full's.

    .venv/bin/python bench/freeze_loto.py          # prints the table, writes bench/results/freeze_loto.{md,json}
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import protocol

from freezetune.measure.costs import waited_s
from freezetune.measure.metrics import sampling_error
from freezetune.scoring.objective import metric_units, predicted_loss, within_noise_choice
from freezetune.scoring.plan_cost import predicted_share

RESULTS = Path(__file__).resolve().parent / "results"
SIGNALS = RESULTS / "signals"
P = protocol.PROTOCOL
L = 6
DEPTHS = [f"depth:{d}" for d in range(L + 1)]
TARGET = 0.5  # points


def task_table(key: str) -> dict:
    """Per plan: test metric per seed and cost share; the oracle's mean (rate grid included)."""
    entry, seeds = protocol.task(key), P["seeds"]
    runs: dict[str, dict[int, dict]] = {}
    for run in protocol.committed(key):
        runs.setdefault(run["strategy"], {})[run["seed"]] = run
    value = {p: {s: 100 * protocol.metric(runs[p][s], entry["metric"]) for s in seeds} for p in P["plans"]}
    full = statistics.fmean(waited_s(runs["full"][s]["summary"]) for s in seeds)
    cost = {p: statistics.fmean(waited_s(runs[p][s]["summary"]) for s in seeds) / full for p in P["plans"]}
    oracle = max(statistics.fmean(v.values()) for v in value.values())
    if key in P.get("rate_grid", []):
        picked = protocol.rate_picked(key, P["plans"], seeds)
        oracle = max(oracle, max(statistics.fmean(100 * protocol.metric(r[s], entry["metric"]) for s in seeds)
                                 for r in picked.values()))
    stored = RESULTS / "selections" / key / "auto-seed0.json"
    scoring_s = json.loads(stored.read_text())["seconds"] if stored.is_file() else 0.0
    return {"key": key, "value": value, "cost": cost, "oracle": oracle, "full_s": full, "metric": entry["metric"],
            "scoring_share": scoring_s / full}


def signals(key: str) -> dict[int, dict]:
    out = {}
    for seed in P["seeds"]:
        path = SIGNALS / key / f"seed{seed}.json"
        if path.is_file():
            out[seed] = json.loads(path.read_text())
    if "drift" not in out.get(P["seeds"][0], {"drift": 0}):
        return out
    for seed in out:  # the drift probe ran on the first seed only: every seed reads it
        out[seed].setdefault("drift", out[P["seeds"][0]]["drift"])
    return out


# ---------------------------------------------------------------------- per-block signals (higher: more to gain)
def support(sig: dict) -> list[float]:
    return [sig["rows"] / n if n else 0.0 for n in sig["gradient"]["noise_scale"]]


def block_signal(name: str, sig: dict) -> list[float]:
    g = sig["gradient"]
    if name == "rgn":
        return list(g["raw"])
    if name == "rgn_above_noise":  # the gradient's signal share that the training rows resolve: 1 - noise/rows
        return [max(0.0, 1 - 1 / s) if s else 0.0 for s in support(sig)]
    if name == "rgn_x_resolved":
        return [r * max(0.0, 1 - 1 / s) if s else 0.0 for r, s in zip(g["raw"], support(sig))]
    if name == "cka_drift":  # how much each block moved the representation in a short full fine-tuning probe
        drop = [1 - c for c in sig["drift"]["cka"]]
        return [max(0.0, drop[b + 1] - drop[b]) for b in range(L)]
    if name == "weight_drift":
        return list(sig["drift"]["weight_change"])
    if name == "probe_rise":  # what a linear probe gains across each block (negative rises count 0)
        acc = sig["probe"]["accuracy"]
        return [max(0.0, acc[b + 1] - acc[b]) for b in range(L)]
    if name == "semantic_shortfall":
        return [max(0.0, s) for s in sig["semantic"]["raw"]]
    if name == "nc1_rise":
        return [max(0.0, s) for s in sig["variability"]["raw"]]
    raise KeyError(name)


BLOCK_SIGNALS = ["rgn", "rgn_above_noise", "rgn_x_resolved", "cka_drift", "weight_drift", "probe_rise",
                 "semantic_shortfall", "nc1_rise"]


def fallback(sig: dict) -> str | None:
    """The data-support rule (docs/scoring.md): no block supported -> LoRA on every block."""
    return "lora:r=8" if all(s < 1 for s in support(sig)) else None


def share_rule(name: str, threshold: float, sig: dict, table: dict) -> str:
    """The deepest frozen prefix whose trainable suffix keeps at least ``threshold`` of the signal."""
    if fallback(sig):
        return fallback(sig)
    s = block_signal(name, sig)
    total = sum(s) or 1.0
    return f"depth:{max(d for d in range(L + 1) if sum(s[d:]) / total >= threshold - 1e-12)}"


def noise_rule(name: str, scale: float, sig: dict, table: dict) -> str:
    """The objective as built: the cheapest plan whose predicted loss is within the validation noise."""
    if fallback(sig):
        return fallback(sig)
    # the run's selection metric (MRPC's binary F1 is monitored as accuracy, as the protocol trains it)
    monitored = {"f1": "accuracy"}.get(table["metric"], table["metric"])
    noise = 100 * sampling_error(monitored, sig["validation_rows"])
    losses = predicted_loss(block_signal(name, sig), scale * metric_units(monitored))
    costs = [predicted_share(L, d) for d in range(L + 1)]
    return f"depth:{within_noise_choice(losses, costs, noise)}"


def support_rule(threshold: float, sig: dict, table: dict) -> str:
    """Blocks whose data support (rows / noise scale) reaches ``threshold``, as a suffix from the top."""
    if fallback(sig):
        return fallback(sig)
    sup, d = support(sig), L
    while d > 0 and sup[d - 1] >= threshold:
        d -= 1
    return f"depth:{min(d, L - 1)}"


def plateau_rule(tolerance: float, sig: dict, table: dict) -> str:
    """Freeze the blocks below the first boundary where the linear probe comes within ``tolerance`` of its best."""
    if fallback(sig):
        return fallback(sig)
    acc = sig["probe"]["accuracy"]
    first = min(b for b in range(L + 1) if acc[b] >= max(acc) - tolerance)
    return f"depth:{min(first, L - 1)}"


CANDIDATES = {f"share:{n}": (lambda n: lambda t, sig, tab: share_rule(n, t, sig, tab))(n) for n in BLOCK_SIGNALS}
CANDIDATES.update({f"noise:{n}": (lambda n: lambda t, sig, tab: noise_rule(n, t, sig, tab))(n)
                   for n in ["rgn", "rgn_x_resolved", "cka_drift", "probe_rise"]})
CANDIDATES["support"] = support_rule
CANDIDATES["probe_plateau"] = plateau_rule
GRIDS = {"share": [i / 20 for i in range(21)], "noise": [1, 1.5, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 60],
         "support": [1, 2, 3, 5, 8, 10, 15, 20, 25, 30, 40, 50, 70, 100, 150, 200],
         "probe_plateau": [0.0, 0.005, 0.01, 0.02, 0.03, 0.05, 0.08, 0.1, 0.15, 1.0]}


def grid(name: str) -> list[float]:
    return GRIDS[name.split(":")[0]]


def judge(plans: dict[int, str], table: dict) -> tuple[float, float]:
    """Mean regret (points, paired per seed) and mean cost share (selection included) of per-seed choices."""
    regret = statistics.fmean(table["oracle"] - table["value"][p][s] for s, p in plans.items())
    cost = statistics.fmean(table["cost"][p] for p in plans.values()) + table["scoring_share"]
    return regret, cost


def evaluate(rule, constant: float, tables: dict, sigs: dict) -> dict[str, tuple[float, float, list[str]]]:
    out = {}
    for key, table in tables.items():
        plans = {s: rule(constant, sig, table) for s, sig in sigs[key].items()}
        out[key] = (*judge(plans, table), [plans[s] for s in sorted(plans)])
    return out


def fit(rule, constants: list[float], tables: dict, sigs: dict) -> float:
    """The constant with the cheapest mean cost whose mean regret on these tasks is within the target."""
    scored = []
    for c in constants:
        res = evaluate(rule, c, tables, sigs)
        scored.append((statistics.fmean(r[0] for r in res.values()), statistics.fmean(r[1] for r in res.values()), c))
    ok = [s for s in scored if s[0] <= TARGET]
    return min(ok, key=lambda s: (s[1], s[0]))[2] if ok else min(scored)[2]


def loto(name: str, tables: dict, sigs: dict) -> dict:
    rule, out = CANDIDATES[name], {}
    for held in tables:
        rest = {k: t for k, t in tables.items() if k != held}
        constant = fit(rule, grid(name), rest, sigs)
        regret, cost, plans = evaluate(rule, constant, {held: tables[held]}, sigs)[held]
        out[held] = {"constant": constant, "regret": regret, "cost": cost, "plans": plans}
    return {"per_task": out, "regret": statistics.fmean(v["regret"] for v in out.values()),
            "cost": statistics.fmean(v["cost"] for v in out.values())}


def main() -> int:
    keys = [k for k in P["order"] if len(signals(k)) == len(P["seeds"])]
    tables = {k: task_table(k) for k in keys}
    sigs = {k: signals(k) for k in keys}
    results = {name: loto(name, tables, sigs) for name in CANDIDATES if all("drift" in s for k in keys
                                                                           for s in sigs[k].values())
               or "drift" not in name}
    short = lambda p: p.replace("depth:", "d").replace("lora:r=8", "lora")  # noqa: E731
    lines = ["| candidate | " + " | ".join(keys) + " | LOTO mean regret | LOTO mean cost |",
             "|" + " --- |" * (len(keys) + 3)]
    for name, r in sorted(results.items(), key=lambda kv: kv[1]["regret"]):
        cells = [f"{'/'.join(short(p) for p in v['plans'])} {v['regret']:+.1f} @{v['cost']:.2f} (c={v['constant']:g})"
                 for v in r["per_task"].values()]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {r['regret']:.2f} | {r['cost']:.2f} |")
    text = "\n".join(lines)
    print(text)
    (RESULTS / "freeze_loto.json").write_text(json.dumps(results, indent=1) + "\n")
    (RESULTS / "freeze_loto_table.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
