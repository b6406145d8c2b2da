"""The cost axis of the regret report (bench/regret.py): what each choice makes the user wait for, the
cheapest-within-noise oracle's frontier, and the plot of regret against cost.

Cost = training + frozen-prefix cache build + the selection's own seconds (measure/costs.waited_s), as a
share of full fine-tuning's on the same task (mean over seeds). Plan costs are the stored runs' times
(measured on 2 shared cores, so inflated alike for every plan; shares are what compare).
"""

from __future__ import annotations

import statistics
from pathlib import Path

from freezetune.measure.costs import waited_s

TOLERANCE = 0.5  # points: the frontier's reference point, "the cheapest plan within 0.5 point of the best"


def plan_seconds(runs: dict[str, dict[int, dict]], plans: list[str], seeds: list[int]) -> dict[str, float]:
    """Each plan's mean waited seconds over seeds."""
    return {p: statistics.fmean(waited_s(runs[p][s]["summary"]) for s in seeds) for p in plans if p in runs}


def cheapest_within(means: dict[str, float], shares: dict[str, float], tolerance: float) -> str:
    """The oracle that knows every plan's mean test metric: the cheapest within ``tolerance`` of the best."""
    best = max(means.values())
    return min((p for p, m in means.items() if m >= best - tolerance - 1e-12), key=lambda p: (shares[p], -means[p]))


def frontier(tasks: list[dict]) -> list[tuple[float, float, float]]:
    """(tolerance, mean regret, mean cost share) of the cheapest-within-tolerance oracle over ``tasks``,
    for tolerances 0..10 points: the best any selector that trains only the protocol's plans can do."""
    out = []
    for tenth in range(0, 101):
        tol = tenth / 10
        picks = [(t, cheapest_within(t["default_means"], t["shares"], tol / 100)) for t in tasks]
        out.append((tol, statistics.fmean(100 * (t["oracle_mean"] - t["default_means"][p]) for t, p in picks),
                    statistics.fmean(t["shares"][p] for t, p in picks)))
    return out


def plot(summary: dict[str, tuple], tasks: list[dict], path: Path, decoder: dict | None = None) -> None:
    """Mean regret against mean cost share for every selector and rule, with the oracle's frontier."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 2 if decoder else 1
    fig, axes = plt.subplots(1, panels, figsize=(7.5 * panels, 5.2), squeeze=False)
    ax = axes[0][0]
    points = frontier(tasks)
    ax.plot([c for _, _, c in points], [r for _, r, _ in points], "-", color="tab:green", lw=1.2,
            label="oracle: cheapest plan within t points of the best (t = 0..10)")
    at = next(p for p in points if abs(p[0] - TOLERANCE) < 1e-9)
    ax.plot(at[2], at[1], "*", color="tab:green", ms=12, label=f"oracle at t = {TOLERANCE} ({at[2]:.2f} of full)")
    for name, (regret, _, _, _, cost) in summary.items():
        rule = name.startswith("always")
        ax.plot(cost, regret, "s" if rule else "o", color="tab:grey" if rule else "tab:blue", ms=6)
        ax.annotate(name, (cost, regret), fontsize=7, xytext=(4, 3), textcoords="offset points")
    ax.axhline(0.5, color="tab:red", lw=0.6, ls="--")
    ax.axvline(0.65, color="tab:red", lw=0.6, ls="--", label="targets: regret 0.5, cost 0.65")
    ax.set_xlabel("mean cost share (training + cache + selection, of full fine-tuning's)", fontsize=8)
    ax.set_ylabel("mean regret vs the rate-grid oracle (points)", fontsize=8)
    ax.set_title("MiniLM, six protocol tasks, 3 seeds", fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
    if decoder:
        ax = axes[0][1]
        for plan, row in decoder["plans"].items():
            ax.errorbar(row["share"], 100 * row["mean"], yerr=100 * row["sd"], fmt="s", color="tab:grey", capsize=3)
            ax.annotate(plan, (row["share"], 100 * row["mean"]), fontsize=7, xytext=(4, 3), textcoords="offset points")
        for name, row in decoder["selectors"].items():
            ax.plot(row["share"], 100 * row["mean"], "o", color="tab:blue", ms=8, mfc="none")
            ax.annotate(name, (row["share"], 100 * row["mean"]), fontsize=7, xytext=(4, -10),
                        textcoords="offset points", color="tab:blue")
        ax.set_xlabel("cost share of full fine-tuning (stored runs)", fontsize=8)
        ax.set_ylabel("test exact match (mean ± sd, 3 seeds)", fontsize=8)
        ax.set_title(decoder["task"], fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
