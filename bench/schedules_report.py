"""The schedule evidence as a Markdown table: bench/results/schedules_sst2.md.

Reads the runs that bench/schedules_sst2.sh left in bench/.cache/schedules_sst2_runs (one
folder per plan and seed) and reports, per plan, mean ± std over seeds: GLUE dev accuracy, STS-B
retention after training, training wall time, the time to the best validation accuracy (the
epochs up to the best one), and peak memory.
"""

import json
import platform
import statistics
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "bench" / ".cache" / "schedules_sst2_runs"
OUT = ROOT / "bench" / "results" / "schedules_sst2.md"


def pm(values, fmt):
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{format(mean, fmt)} ± {format(std, fmt)}"


def main() -> int:
    by_plan: dict[str, list[dict]] = {}
    for metrics_file in sorted(RUNS.glob("*/metrics.json")):
        metrics = json.loads(metrics_file.read_text())
        config = yaml.safe_load((metrics_file.parent / "config.yaml").read_text())
        costs = metrics["costs"]
        best_epoch = metrics["validation"]["epoch"]  # the best validation's epoch (evaluated after each)
        by_plan.setdefault(config["strategy"], []).append({
            "seed": config["seed"],
            "test": metrics["test"]["accuracy"],
            "val": metrics["validation"]["accuracy"],
            "retention": costs["retention"]["after"],
            "retention_before": costs["retention"]["before"],
            "train_s": costs["train_time_s"],
            "to_best_s": sum(costs["epoch_times_s"][: best_epoch + 1]),
            "peak_mib": costs["peak_memory_bytes"] / 2**20,
            "trainable": costs["trainable_params"],
            "step_s": costs["steady_step_s"],
        })
    if not by_plan:
        print(f"no runs in {RUNS}", file=sys.stderr)
        return 1
    before = next(iter(by_plan.values()))[0]["retention_before"]
    lines = [
        "# Schedules on SST-2 (2,000 rows), against full fine-tuning and the best static plan",
        "",
        "`bash bench/schedules_sst2.sh` then `python bench/schedules_report.py`. all-MiniLM-L6-v2, 2,000 stratified "
        "SST-2 training rows, 500 other training rows validate (pick the best epoch), GLUE dev (872) is the test set, "
        "max length 64, batch 32, 3 epochs (189 steps), each plan's default rate, STS-B Spearman on 500 pairs "
        f"(untouched model: {before:.3f}). Machine: {platform.machine()} {platform.processor() or ''}, 2 cores, "
        "torch CPU fp32, nice 10, run alone.",
        "",
        "| plan | seeds | test accuracy | STS-B after | train s | s to best val | s/step | peak MiB | trained params |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for plan, runs in by_plan.items():
        lines.append(
            f"| {plan} | {len(runs)} | {pm([r['test'] for r in runs], '.3f')} | {pm([r['retention'] for r in runs], '.3f')} "
            f"| {pm([r['train_s'] for r in runs], '.0f')} | {pm([r['to_best_s'] for r in runs], '.0f')} "
            f"| {statistics.fmean(r['step_s'] for r in runs):.2f} | {statistics.fmean(r['peak_mib'] for r in runs):.0f} "
            f"| {runs[0]['trainable']:,} |"
        )
    OUT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
