"""Should I freeze layers when fine-tuning an LLM? SmolLM2-135M-Instruct answers SST-2 as text.

The protocol's ``smollm2_sst2_500`` task (bench/protocol.yaml): 500 training rows, prompt "Movie
review: <sentence> Is this review positive or negative?" (the question last, so a long review loses
its start, never the question), response ``positive`` / ``negative`` through the model's chat template; 100 other training rows for validation, 300 seeded SST-2 dev
rows for test; max length 64, 2 epochs, seeds 0-2. Plans: full, top_k:8 (a quarter of the 30
blocks), lower_half, LoRA on all blocks, on the top half and on the top 8 blocks, and ``auto``.

Reported per plan (mean ± sd over seeds): exact match on test after greedy decoding (teacher-forced,
which equals it: tasks/causal_lm.py), WikiText-2 perplexity before and after (first 4,096 tokens),
training wall time, peak memory and trainable parameters; and the selection regret of ``auto``
against the best of the other plans (paired per seed). The untrained model's exact match is the
zero-shot line. Finished runs are committed under bench/results/runs/smollm2_sst2_500/ (a fresh
checkout reuses them); the table goes to bench/results/causal_lm.md.

    .venv/bin/python bench/causal_lm.py [--plans ...] [--seeds 0 1 2] [--report-only]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import protocol  # noqa: E402

KEY = "smollm2_sst2_500"
PLANS = ["full", "top_k:8", "lower_half", "lora:r=8", "lora:r=8:blocks=15-29", "lora:r=8:blocks=22-29", "auto"]
RESULTS = protocol.ROOT / "bench" / "results"
ZERO_SHOT = RESULTS / "causal_lm_zero_shot.json"
log = logging.getLogger("freezetune")


def zero_shot() -> dict:
    """Exact match and loss of the untrained model on the test split (measured once, committed)."""
    if ZERO_SHOT.is_file():
        saved = json.loads(ZERO_SHOT.read_text())
        if saved["fingerprint"] == protocol.fingerprint(KEY):
            return saved
    from freezetune.core.model import load_tokenizer
    from freezetune.runs.loading import load_data, load_model, make_task
    from freezetune.training.finetuner import Finetuner

    spec = protocol.base_spec(KEY)
    tokenizer = load_tokenizer(spec.model.model, gguf_file=spec.model.gguf_file)
    data = load_data(spec, tokenizer)
    task = make_task(spec, data)
    tuner = Finetuner(load_model(spec, task), "head_only", task=task, pad_token_id=tokenizer.pad_token_id,
                      progress=False)
    saved = {"fingerprint": protocol.fingerprint(KEY), "test": tuner.evaluate(data.test)}
    ZERO_SHOT.write_text(json.dumps(saved, indent=1) + "\n")
    return saved


def _pm(values: list[float], fmt: str) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):{fmt}} ± {sd:{fmt}}"


def report(runs: list[dict], baseline: dict) -> str:
    by_plan: dict[str, dict[int, dict]] = {}
    for r in runs:
        by_plan.setdefault(r["strategy"], {})[r["seed"]] = r
    plans = [p for p in PLANS if p in by_plan]
    lines = [
        f"# {protocol.task(KEY)['name']}: where to fine-tune a causal LM",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, no GPU; fp32. Command: "
        "`.venv/bin/python bench/causal_lm.py`. Protocol: bench/protocol.yaml (`smollm2_sst2_500`).",
        "",
        f"Zero-shot (no training): exact match {baseline['test']['exact_match']:.3f}, "
        f"test loss {baseline['test']['loss']:.3f}.",
        "",
        "| plan | seeds | exact match (test) | WikiText-2 ppl before → after | train time | peak memory | trainable |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for plan in plans:
        rs = list(by_plan[plan].values())
        s = [r["summary"] for r in rs]
        lines.append(
            f"| {plan} | {len(rs)} | {_pm([r['test']['exact_match'] for r in rs], '.3f')} | "
            f"{statistics.fmean(x['retention_before'] for x in s):.2f} → "
            f"{_pm([x['retention_after'] for x in s], '.2f')} | "
            f"{statistics.fmean(x['train_time_s'] for x in s) / 60:.1f} min | "
            f"{statistics.fmean(x['peak_memory_bytes'] for x in s) / 2**30:.2f} GiB | "
            f"{statistics.fmean(x['trainable_params'] for x in s) / 1e6:.2f} M |"
        )
    if "auto" in by_plan:
        lines += ["", *_regret(by_plan)]
    return "\n".join(lines) + "\n"


def _regret(by_plan: dict[str, dict[int, dict]]) -> list[str]:
    """auto against the best fixed plan by mean test exact match, with the paired per-seed spread."""
    fixed = {p: runs for p, runs in by_plan.items() if p != "auto"}
    seeds = sorted(set(by_plan["auto"]).intersection(*(set(r) for r in fixed.values())))
    if not seeds:
        return ["auto's seeds have no finished runs of every other plan yet: no regret."]
    mean = {p: statistics.fmean(fixed[p][s]["test"]["exact_match"] for s in seeds) for p in fixed}
    best = max(mean, key=mean.get)
    gaps = [100 * (fixed[best][s]["test"]["exact_match"] - by_plan["auto"][s]["test"]["exact_match"]) for s in seeds]
    sd = statistics.stdev(gaps) if len(gaps) > 1 else 0.0
    chosen = [by_plan["auto"][s]["summary"].get("frozen_prefix_depth") for s in seeds]
    return [f"auto: regret {statistics.fmean(gaps):.2f} ± {sd:.2f} points of exact match against the best "
            f"plan ({best}, {100 * mean[best]:.1f}), seeds {seeds}; frozen prefix depth chosen per seed: {chosen}."]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plans", nargs="+", default=PLANS)
    parser.add_argument("--seeds", nargs="+", type=int, default=protocol.PROTOCOL["seeds"])
    parser.add_argument("--report-only", action="store_true", help="no training: the table from committed runs")
    args = parser.parse_args()
    if not protocol.SHARED.is_dir():
        print(f"skipped: {protocol.SHARED} is absent", file=sys.stderr)
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("freezetune").setLevel(logging.INFO)
    baseline = zero_shot()
    runs = protocol.committed(KEY) if args.report_only else protocol.sweep(KEY, args.plans, args.seeds)
    text = report(runs, baseline)
    (RESULTS / "causal_lm.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
