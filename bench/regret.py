"""Selection regret: does scoring pick the plan that a full sweep would have picked, and at what cost?

For each task (../shared/data: SST-2 with 100 and 2,000 training rows, CoLA, MRPC) the sweep runner
trains every frozen-prefix depth d = 0..L (d = 3, 4, 6 are lower_half, top_k:2 and head_only, named
so that the runs of bench/compare_sst2.sh are reused) plus full, alternate and LoRA, 3 seeds each at
each plan's default rate; retention is STS-B Spearman (500 pairs). That finds two oracles: the best
test accuracy over all plans, and the best among plans keeping STS-B >= 0.70.

Then every scorer scores a 256-row sample (one untrained model, head seeded 0) and ``select_blocks``
turns the scores into a contiguous suffix under each budget (3 blocks; all 6). A suffix is a depth
plan, so its accuracy is the depth sweep's: no extra training. Reported per choice: the plan, its
test accuracy (mean of 3 seeds), STS-B, scoring time as a share of one full fine-tuning run's
training time on the same task, and regret against both oracles. A choice that breaks the STS-B
floor is counted as if the user fell back to head_only (which never changes the encoder).
Fixed rules (always full / lower_half / top_k:2 / head_only) are the baselines.

    nice -n 5 env HF_HUB_OFFLINE=1 .venv/bin/python bench/regret.py            # all tasks
    .venv/bin/python bench/regret.py --report-only                              # rewrite the tables
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from freezetune.core.config import DataConfig, TrainConfig  # noqa: E402
from freezetune.core.layout import LayerMap  # noqa: E402
from freezetune.core.model import load_classifier, load_tokenizer  # noqa: E402
from freezetune.runs.run import RunSpec, load_data  # noqa: E402
from freezetune.runs.sweep import Sweep, run_sweep  # noqa: E402
from freezetune.scoring.sample import sample_batches  # noqa: E402
from freezetune.scoring.scorers import SCORERS, score  # noqa: E402
from freezetune.scoring.select import select_blocks  # noqa: E402
from freezetune.strategies.registry import resolve  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GLUE = ROOT.parent / "shared" / "data" / "glue"
CACHE = ROOT / "bench" / ".cache"
RESULTS = ROOT / "bench" / "results"
SEEDS = [0, 1, 2]
STS_FLOOR = 0.70
BUDGETS = (3, 6)  # blocks the suffix may hold: a tight budget, and a free choice among all depths
PLANS = ["full", "depth:0", "depth:1", "depth:2", "lower_half", "top_k:2", "depth:5", "head_only", "alternate",
         "lora:r=8"]
RULES = ["full", "lower_half", "top_k:2", "head_only"]


@dataclass
class Task:
    name: str
    folder: str
    text: str
    label: str
    rows: int
    epochs: int = 3
    pair: str | None = None
    header: bool = True
    runs: Path | None = None  # a run store shared with other evidence
    extra: dict = field(default_factory=dict)

    def base(self) -> RunSpec:
        data = DataConfig(
            data=str(Path("../shared/data/glue") / self.folder / "train.tsv"),
            test_data=str(Path("../shared/data/glue") / self.folder / "dev.tsv"),
            text_column=self.text, text_pair_column=self.pair, label_column=self.label, header=self.header,
            max_train_rows=self.rows, max_length=64, retention_limit=500,
        )
        return RunSpec(data=data, train=TrainConfig(epochs=self.epochs, batch_size=32, progress=False)).resolved()


TASKS = {
    # 100 rows: 90 train / 10 validate; 10 epochs so that 30 optimizer steps are taken
    "sst2_100": Task("SST-2, 100 rows", "SST-2", "sentence", "label", 100, epochs=10),
    "sst2_2000": Task("SST-2, 2,000 rows", "SST-2", "sentence", "label", 2000, runs=CACHE / "compare_sst2" / "runs"),
    # 500 rows (450 train / 50 validate) keep the whole benchmark near an hour on 2 CPU cores
    "cola_500": Task("CoLA, 500 rows", "CoLA", "3", "1", 500, header=False),
    "mrpc_500": Task("MRPC, 500 rows", "MRPC", "#1 String", "Quality", 500, pair="#2 String"),
}


# ---------------------------------------------------------------------- measuring
def sweep(task: Task) -> dict[str, dict]:
    """Every plan's mean test accuracy, STS-B and training time over the seeds (runs reused)."""
    out = CACHE / "regret" / task_key(task)
    rows = run_sweep(Sweep(strategies=PLANS, base=task.base(), seeds=SEEDS, output=str(out),
                           runs=str(task.runs) if task.runs else None))
    return {r["strategy"]: {
        "accuracy": r["accuracy"], "accuracy_std": r["accuracy_std"], "mcc": r["mcc"],
        "sts": r.get("retention_after"), "train_time_s": r["train_time_s"], "lr": r["lr"],
        "trainable_params": r["trainable_params"],
    } for r in rows}


def task_key(task: Task) -> str:
    return next(k for k, t in TASKS.items() if t is task)


def scores_for(task: Task) -> tuple[dict[str, dict], dict[str, object]]:
    """Each scorer's result on the task's 256-row sample, and each plan spec's resolved Plan."""
    base = task.base()
    tokenizer = load_tokenizer(base.model.model)
    data = load_data(base, tokenizer)  # the split the sweep used (data seed 0)
    torch.manual_seed(0)
    model = load_classifier(base.model.model, len(data.label_names), pooling=base.model.pooling)
    layers = LayerMap.from_model(model)
    sample = sample_batches(data.train, seed=0, pad_token_id=tokenizer.pad_token_id or 0)
    results = {}
    for name in SCORERS:
        result = score(model, sample, name, layers=layers)
        choices = {}
        for budget in BUDGETS:
            plan = select_blocks(result, layers, budget=budget)
            choices[str(budget)] = plan
        results[name] = {"seconds": result.seconds, "scores": result.scores, "samples": result.samples,
                         "choices": choices}
    plans = {spec: resolve(spec, layers) for spec in PLANS if not spec.startswith("lora")}
    return results, plans


def spec_of(plan, plans: dict) -> str:
    return next(spec for spec, p in plans.items() if p == plan)


# ---------------------------------------------------------------------- judging
def judge(task_name: str, table: dict[str, dict], scored: dict, plans: dict) -> dict:
    acc = {spec: row["accuracy"] for spec, row in table.items()}
    feasible = {spec: a for spec, a in acc.items() if (table[spec]["sts"] or 0) >= STS_FLOOR}
    oracle = max(acc, key=acc.get)
    oracle_c = max(feasible, key=feasible.get)
    one_run = table["full"]["train_time_s"]

    def verdict(spec: str) -> dict:
        ok = (table[spec]["sts"] or 0) >= STS_FLOOR
        counted = acc[spec] if ok else acc["head_only"]
        return {"plan": spec, "accuracy": acc[spec], "sts": table[spec]["sts"], "meets_floor": ok,
                "regret": acc[oracle] - acc[spec], "regret_constrained": acc[oracle_c] - counted}

    choices = []
    for scorer, result in scored.items():
        for budget, plan in result["choices"].items():
            spec = spec_of(plan, plans)
            choices.append({"selector": f"auto:{scorer}:budget={budget}", "scorer": scorer, "budget": int(budget),
                            "cost_share": result["seconds"] / one_run, "scoring_s": result["seconds"],
                            **verdict(spec)})
    for rule in RULES:
        choices.append({"selector": f"always {rule}", "scorer": None, "budget": None, "cost_share": 0.0,
                        "scoring_s": 0.0, **verdict(rule)})
    return {"task": task_name, "plans": table, "oracle": oracle, "oracle_accuracy": acc[oracle],
            "oracle_constrained": oracle_c, "oracle_constrained_accuracy": acc[oracle_c],
            "one_run_s": one_run, "choices": choices,
            "scores": {s: {"scores": r["scores"], "seconds": r["seconds"], "samples": r["samples"]}
                       for s, r in scored.items()}}


# ---------------------------------------------------------------------- reporting
def report(results: dict) -> str:
    tasks = results["tasks"]
    lines = [
        "# Where to fine-tune: selection regret", "",
        f"Machine: {results['machine']}. Command: `{results['command']}`.", "",
        "all-MiniLM-L6-v2 (6 blocks, mean pooling), max length 64, batch 32, each plan's default rate, "
        f"{len(SEEDS)} seeds (mean test accuracy on the GLUE dev set), STS-B Spearman on 500 pairs "
        f"(0.867 before), floor {STS_FLOOR}. Depth d = embeddings and blocks 0..d-1 frozen "
        "(d3 = lower_half, d4 = top_k:2, d6 = head_only). Scorers see 256 training rows (or all of them); "
        "cost = scoring time / one full fine-tuning run's training time on the same task.", "",
        "## Every plan (test accuracy ± std / STS-B after)", "",
    ]
    header = "| plan | " + " | ".join(t["task"] for t in tasks) + " |"
    lines += [header, "|" + " --- |" * (len(tasks) + 1)]
    for spec in PLANS:
        cells = []
        for t in tasks:
            row = t["plans"][spec]
            mark = "**" if spec == t["oracle"] else ""
            sts = f"{row['sts']:.2f}" if row["sts"] is not None else "–"
            cells.append(f"{mark}{row['accuracy']:.3f}{mark} ± {row['accuracy_std']:.3f} / {sts}")
        lines.append(f"| {spec} | " + " | ".join(cells) + " |")
    lines += ["", "Bold: the oracle. Constrained oracle (STS-B ≥ 0.70): "
              + "; ".join(f"{t['task']} {t['oracle_constrained']} {t['oracle_constrained_accuracy']:.3f}" for t in tasks),
              "", "## Choices and regret (points of accuracy)", "",
              "| selector | " + " | ".join(t["task"] for t in tasks) + " | mean regret | mean constrained regret | mean cost |",
              "|" + " --- |" * (len(tasks) + 4)]
    selectors = [c["selector"] for c in tasks[0]["choices"]]
    summary = []
    for selector in selectors:
        picked = [next(c for c in t["choices"] if c["selector"] == selector) for t in tasks]
        cells = [f"{c['plan']} {100 * c['regret']:+.1f} / {100 * c['regret_constrained']:+.1f}"
                 + ("" if c["meets_floor"] else " ✗") + (f" ({100 * c['cost_share']:.0f}%)" if c["scorer"] else "")
                 for c in picked]
        mean = statistics.fmean(100 * c["regret"] for c in picked)
        mean_c = statistics.fmean(100 * c["regret_constrained"] for c in picked)
        cost = statistics.fmean(100 * c["cost_share"] for c in picked)
        summary.append((selector, mean, mean_c, cost))
        lines.append(f"| {selector} | " + " | ".join(cells) + f" | {mean:.2f} | {mean_c:.2f} | {cost:.0f}% |")
    lines += [
        "", "Cell: chosen plan, regret vs the oracle / vs the constrained oracle (✗: the choice breaks the STS-B "
        "floor and is counted as head_only), (scoring cost as % of one full run).", "",
        "## Targets", "",
        "- mean constrained regret ≤ 0.5 point: " + ", ".join(
            f"{s} {mc:.2f} {'PASS' if mc <= 0.5 else 'MISS'}" for s, _, mc, _ in summary if s.startswith("auto")),
    ]
    for t in tasks:
        limit = 0.2 if "100 rows" in t["task"] else 0.05
        costs = {c["scorer"]: c["cost_share"] for c in t["choices"] if c["scorer"]}
        lines.append(f"- scoring ≤ {limit:.0%} of one run on {t['task']} (one run = {t['one_run_s']:.0f} s): " + ", ".join(
            f"{s} {100 * v:.1f}% {'PASS' if v <= limit else 'MISS'}" for s, v in costs.items()))
    best_rule = min((s for s in summary if s[0].startswith("always")), key=lambda s: s[2])
    lines.append(f"- best fixed rule by constrained regret: {best_rule[0]} ({best_rule[2]:.2f}); scorers below it: "
                 + (", ".join(s[0] for s in summary if s[0].startswith("auto") and s[2] < best_rule[2]) or "none"))
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = results["tasks"]
    fig, axes = plt.subplots(1, len(tasks), figsize=(4 * len(tasks), 3.4), sharey=False)
    for ax, t in zip(axes, tasks):
        depths = ["depth:0", "depth:1", "depth:2", "lower_half", "top_k:2", "depth:5", "head_only"]
        acc = [t["plans"][s]["accuracy"] for s in depths]
        sts = [t["plans"][s]["sts"] for s in depths]
        ax.plot(range(7), acc, "o-", label="test accuracy")
        ax2 = ax.twinx()
        ax2.plot(range(7), sts, "s--", color="tab:green", label="STS-B after")
        ax2.axhline(STS_FLOOR, color="tab:green", lw=0.5)
        for c in t["choices"]:
            if c["scorer"] and c["budget"] == 6 and c["plan"] in depths:
                ax.annotate(c["scorer"][:4], (depths.index(c["plan"]), c["accuracy"]), fontsize=7,
                            xytext=(0, 6 + 7 * list(SCORERS).index(c["scorer"])), textcoords="offset points")
        ax.set_title(t["task"], fontsize=9)
        ax.set_xlabel("frozen-prefix depth d")
        ax.set_xticks(range(7))
    axes[0].set_ylabel("test accuracy")
    fig.suptitle("accuracy (blue) and STS-B retention (green) by depth; labels: the scorers' picks (budget 6)",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--report-only", action="store_true", help="rewrite the report from the saved JSON")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("freezetune").setLevel(logging.INFO)
    json_path = RESULTS / "regret.json"
    if args.report_only:
        results = json.loads(json_path.read_text())
    else:
        if not GLUE.is_dir():
            raise SystemExit(f"{GLUE} is missing: this benchmark needs ../shared/data")
        started = time.time()
        judged = []
        for key in args.tasks:
            task = TASKS[key]
            table = sweep(task)
            scored, plans = scores_for(task)
            judged.append(judge(task.name, table, scored, plans))
        results = {
            "machine": f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), torch "
                       f"{torch.__version__}, fp32",
            "command": "nice -n 5 env HF_HUB_OFFLINE=1 .venv/bin/python bench/regret.py",
            "wall_s": time.time() - started, "tasks": judged,
        }
        RESULTS.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(results, indent=1, default=str) + "\n")
    (RESULTS / "regret.md").write_text(report(results))
    plot(results, RESULTS / "regret.png")
    print(report(results))


if __name__ == "__main__":
    main()
