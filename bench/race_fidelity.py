"""Does a brief run rank the frozen-prefix depths as a full run does? (what ``auto:method=race`` relies on)

For each task of the shared protocol (bench/protocol.yaml) and one seed, every ``depth:d`` trains
from the seed's model for a few optimizer steps at its default rate, with the run's warm-up and
decay compressed to those steps (exactly as a race rung trains), and is scored on the protocol's
validation rows. Beside it: the same plans' full runs from the committed sweep (mean test metric
over 3 seeds). Reported per step count: every depth's validation loss and metric, the depth a
brief run ranks first, and the rank correlation (Spearman) between the brief runs' validation
loss and the full runs' test metric.

    nice -n 5 .venv/bin/python bench/race_fidelity.py                       # tweets and SST-2 at 2,000 rows
    .venv/bin/python bench/race_fidelity.py --tasks cola_2000 --steps 5 20   # others
"""

from __future__ import annotations

import argparse
import logging
import platform
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import protocol
import torch

from freezetune.core.layout import LayerMap
from freezetune.core.model import load_tokenizer
from freezetune.runs.run import RunCaches, load_data, load_model
from freezetune.scoring import race
from freezetune.strategies.lr_policy import default_lr
from freezetune.strategies.registry import ResolveContext, resolve
from freezetune.tasks.classification import SequenceClassification
from freezetune.tasks.task import monitored_metric

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "race_fidelity.md"


def brief_runs(key: str, seed: int, steps: list[int]) -> tuple[str, dict[int, dict[int, dict]]]:
    """{steps: {depth: validation metrics}} after that many steps, trained by the race's own rung
    (:func:`freezetune.scoring.race.train_rung`)."""
    base = protocol.base_spec(key)
    tokenizer = load_tokenizer(base.model.model)
    data = load_data(base, tokenizer)
    task = SequenceClassification(data.label_names)
    spec = replace(base, train=replace(base.train, seed=seed))
    model = load_model(spec, task)
    layers = LayerMap.from_model(model)
    config = race.rung_config(spec.train)
    context = ResolveContext(model=model, task=task, validation=data.validation,
                             pad_token_id=tokenizer.pad_token_id or 0, cache_store=RunCaches().prefix)
    shuffled = data.train.shuffle(seed=seed)
    out: dict[int, dict[int, dict]] = {}
    for n in steps:
        subset = shuffled.select(range(min(len(shuffled), n * config.batch_size)))
        for d in range(layers.num_blocks + 1):
            plan = resolve(f"depth:{d}", layers)
            rate = default_lr(plan, layers)
            out.setdefault(n, {})[d] = {**race.train_rung(context, plan, config, steps=n, lr=rate, train=subset),
                                        "lr": rate}
            logging.getLogger("freezetune").info("%s: depth:%d after %d steps: loss %.4f", key, d, n,
                                                 out[n][d]["loss"])
    return monitored_metric(task, config.metric), out


def full_runs(key: str, metric: str, depths: list[int]) -> dict[int, float]:
    """Mean test metric of each depth's committed full runs (the oracle sweep)."""
    runs: dict[int, list[float]] = {}
    for run in protocol.committed(key):
        if run["strategy"].startswith("depth:") and int(run["strategy"].split(":")[1]) in depths:
            runs.setdefault(int(run["strategy"].split(":")[1]), []).append(protocol.metric(run, metric))
    return {d: statistics.fmean(v) for d, v in runs.items()}


def spearman(a: list[float], b: list[float]) -> float:
    """Rank correlation of two lists without ties worth handling (continuous losses and means)."""
    def ranks(xs: list[float]) -> list[int]:
        order = sorted(range(len(xs)), key=xs.__getitem__)
        out = [0] * len(xs)
        for rank, i in enumerate(order):
            out[i] = rank
        return out
    ra, rb, n = ranks(a), ranks(b), len(a)
    return 1 - 6 * sum((x - y) ** 2 for x, y in zip(ra, rb)) / (n * (n * n - 1))


def section(key: str, seed: int, metric: str, brief: dict[int, dict[int, dict]], full: dict[int, float],
            full_steps: int) -> str:
    depths = sorted(full)
    best_full = max(depths, key=full.__getitem__)
    lines = [f"## {protocol.task(key)['name']} ({metric}; seed {seed}; one full run is {full_steps} steps)", "",
             "| depth | rate | " + " | ".join(f"{n} steps: loss / {metric}" for n in sorted(brief))
             + f" | full run: test {metric} (3 seeds) |",
             "| --- | --- |" + " --- |" * (len(brief) + 1)]
    for d in depths:
        cells = [f"{brief[n][d]['loss']:.3f} / {brief[n][d][metric]:.3f}" for n in sorted(brief)]
        rate = brief[min(brief)][d]["lr"]
        best = " (best)" if d == best_full else ""
        lines.append(f"| depth:{d} | {rate:g} | " + " | ".join(cells) + f" | {full[d]:.3f}{best} |")
    lines += ["", "| steps | lowest validation loss | best validation metric | Spearman(loss, −full metric) |",
              "| --- | --- | --- | --- |"]
    for n in sorted(brief):
        by_loss = min(depths, key=lambda d: brief[n][d]["loss"])
        by_metric = max(depths, key=lambda d: brief[n][d][metric])
        rho = spearman([brief[n][d]["loss"] for d in depths], [-full[d] for d in depths])
        lines.append(f"| {n} | depth:{by_loss} (full run {full[by_loss]:.3f}) | depth:{by_metric} "
                     f"(full run {full[by_metric]:.3f}) | {rho:+.2f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["tweets_2000", "sst2_2000"],
                        choices=[k for k, t in protocol.PROTOCOL["tasks"].items() if t.get("task") != "causal-lm"],
                        help="protocol task keys")
    parser.add_argument("--seed", type=int, default=0, help="the seed's model, head and data order")
    parser.add_argument("--steps", nargs="+", type=int, default=[5, 10, 20, 60], help="brief runs' step counts")
    args = parser.parse_args()
    if not protocol.SHARED.is_dir():
        print(f"skipped: {protocol.SHARED} is absent", file=sys.stderr)
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    started = time.perf_counter()
    sections = []
    for key in args.tasks:
        metric, brief = brief_runs(key, args.seed, sorted(args.steps))
        full = full_runs(key, metric, sorted(next(iter(brief.values()))))
        config = protocol.base_spec(key).train
        rows = protocol.task(key)["rows"]
        full_steps = -(-rows // config.batch_size) * config.epochs
        sections.append(section(key, args.seed, metric, brief, full, full_steps))
    header = (f"# Brief runs against full runs: what a race rung sees\n\nMachine: {platform.machine()}, "
              f"{torch.get_num_threads()} threads, torch {torch.__version__}, fp32. Command: `nice -n 5 "
              f".venv/bin/python bench/race_fidelity.py --tasks {' '.join(args.tasks)} --seed {args.seed} --steps "
              f"{' '.join(map(str, sorted(args.steps)))}` ({time.perf_counter() - started:.0f} s). Each depth at its "
              "default rate, schedule compressed to the steps as a "
              "race rung trains; validation = the protocol's 500 rows; full runs from the committed sweep.\n")
    OUT.write_text(header + "\n" + "\n\n".join(sections) + "\n")
    print(OUT.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
