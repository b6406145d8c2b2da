"""SST-2 at 1,000 rows with all-MiniLM-L6-v2: reproduce the 1k column of the reference table.

Runs freezetune's ``run_training`` for six plans (full, lower_half, alternate, top_k:2,
head_only with CLS pooling, head_only with mean pooling) x 3 seeds, with freezetune's
default learning rates, on a stratified 1,000-row sample of SST-2 train (the sample is
drawn with the run seed, so each seed sees a different 1,000 rows); 10 % of those rows
(stratified, same seed) are the validation set that picks the best epoch, so 900 rows
train. SST-2 dev (872 rows) is the test set the reported numbers come from.

Each finished run's summary goes into ``bench/results/sst2_core.json`` at once, keyed by
a hash of its config; runs already there are skipped, so an interrupted job continues.
Each run trains in a forked child process (so its peak RSS is its own, not the high-water
mark of earlier runs); the child inherits the tokenizer and the tokenized data of its
seed from the parent, which tokenizes once per seed.

    nice -n 10 env HF_HUB_OFFLINE=1 .venv/bin/python bench/sst2_core.py
    .venv/bin/python bench/sst2_core.py --report-only     # rewrite the .md from the .json
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import logging
import multiprocessing as mp
import os
import platform
import shlex
import statistics
import sys
import time
import traceback
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # we fork after tokenizing

import torch  # noqa: E402

from freezetune.core.config import DataConfig, ModelConfig, TrainConfig  # noqa: E402
from freezetune.core.model import load_tokenizer  # noqa: E402
from freezetune.io import defaults  # noqa: E402
from freezetune.io.data import load_classification_data  # noqa: E402
from freezetune.runs.run import run_training  # noqa: E402
from freezetune.runs.spec import RunSpec  # noqa: E402


def _pin_library() -> dict:
    """Import every freezetune module now, so every forked run uses this one snapshot of the code
    (others edit src/ while long jobs run), and identify that snapshot."""
    import importlib
    import pkgutil
    import subprocess

    import freezetune

    for info in pkgutil.walk_packages(freezetune.__path__, "freezetune."):
        try:
            importlib.import_module(info.name)
        except Exception:  # noqa: BLE001 - optional extras may be missing; they are not used here
            pass
    src = Path(freezetune.__file__).resolve().parent
    digest = hashlib.sha256()
    for file in sorted(src.rglob("*.py")):
        digest.update(file.relative_to(src).as_posix().encode() + b"\0" + file.read_bytes())
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=src, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "."], cwd=src, capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        head, dirty = "unknown", ""
    return {"git_head": head, "src_dirty": bool(dirty), "src_sha256": digest.hexdigest()[:16]}


LIBRARY = _pin_library()
START_ISO = None

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

# (label, strategy, pooling). "auto" = the model's own pooling (MiniLM: mean).
PLANS = [
    ("full", "full", "auto"),
    ("lower_half", "lower_half", "auto"),
    ("alternate", "alternate", "auto"),
    ("top_k:2", "top_k:2", "auto"),
    ("head_only (cls)", "head_only", "cls"),
    ("head_only (mean)", "head_only", "mean"),
]

# ../shared/data/README.md, SST-2 1k-row column. "cls" = the main table (BertForSequenceClassification,
# CLS pooler, best of two LRs, mean of two seeds, bf16 on an H100); "mean" = the mean-pooled table
# (3 seeds, one LR per plan: 1e-4 up to depth 3, 3e-4 at depth 4-5, 3e-3 head only).
REFERENCE = {
    "full": {"cls": 0.815, "mean": 0.820, "mean_row": "full", "sts_cls": 0.53, "sts_mean": 0.63},
    "lower_half": {"cls": 0.811, "mean": 0.822, "mean_row": "d3", "sts_cls": 0.75, "sts_mean": 0.80},
    "alternate": {"cls": 0.807, "mean": None, "mean_row": None, "sts_cls": 0.75, "sts_mean": None},
    "top_k:2": {"cls": 0.816, "mean": 0.813, "mean_row": "d4", "sts_cls": 0.73, "sts_mean": 0.70},
    "head_only (cls)": {"cls": 0.703, "mean": None, "mean_row": None, "sts_cls": 0.87, "sts_mean": None},
    "head_only (mean)": {"cls": None, "mean": 0.770, "mean_row": "d6; 1-seed probe: 0.741", "sts_cls": None,
                         "sts_mean": 0.87},
}


def config_key(cfg: dict) -> str:
    return hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:16]


def load_results(path: Path) -> dict:
    if path.is_file():
        return json.loads(path.read_text())
    return {"meta": {}, "runs": {}}


def save_results(path: Path, results: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)  # atomic: an interrupted write never leaves a broken cache


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores_visible": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _child(conn, spec: RunSpec, data, tokenizer, threads: int) -> None:
    try:
        torch.set_num_threads(threads)
        started = time.perf_counter()
        result = run_training(spec, data=data, tokenizer=tokenizer)
        wall = time.perf_counter() - started
        conn.send(
            {
                "ok": True,
                "summary": result.summary(),
                "validation": {k: result.validation.get(k) for k in ("accuracy", "macro_f1", "mcc", "loss")},
                "epoch_times_s": result.fit.costs.get("epoch_times_s"),
                "best_step": result.fit.best_step,
                "history": [
                    {k: h.get(k) for k in ("step", "epoch", "accuracy", "macro_f1", "loss")}
                    for h in result.fit.history
                ],
                "pooling_resolved": result.spec.model.pooling,
                "data": result.data_summary,
                "run_wall_s": wall,
            }
        )
    except BaseException:  # noqa: BLE001 - report any crash to the parent
        conn.send({"ok": False, "traceback": traceback.format_exc()})
    finally:
        conn.close()


def run_one(spec: RunSpec, data, tokenizer, threads: int, fork: bool) -> dict:
    if not fork:
        r, w = mp.Pipe(duplex=False)
        _child(w, spec, data, tokenizer, threads)
        return r.recv()
    ctx = mp.get_context("fork")
    r, w = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(w, spec, data, tokenizer, threads))
    proc.start()
    w.close()
    try:
        out = r.recv()
    except EOFError:
        out = {"ok": False, "traceback": "child process died without a result"}
    proc.join()
    if proc.exitcode not in (0, None) and out.get("ok"):
        out["note"] = f"child exit code {proc.exitcode}"
    return out


def fmt_mean_std(values: list[float], digits: int = 3) -> str:
    if not values:
        return "–"
    mean = statistics.fmean(values)
    if len(values) < 2:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def fmt_diff(ours: float | None, ref: float | None) -> str:
    if ours is None or ref is None:
        return "–"
    return f"{ours - ref:+.3f}"


def build_report(results: dict, args, plans, seeds) -> str:
    meta = results.get("meta", {})
    runs = results["runs"]
    rows = []
    for label, strategy, pooling in plans:
        picked = []
        for seed in seeds:
            key = config_key(run_config(args, strategy, pooling, seed))
            if key in runs:
                picked.append(runs[key])
        if not picked:
            rows.append((label, None))
            continue
        s = [p["summary"] for p in picked]
        acc = [x["accuracy"] for x in s]
        f1 = [x["macro_f1"] for x in s]
        lrs = sorted({x["lr"] for x in s})
        agg = {
            "n": len(picked),
            "acc": acc,
            "acc_mean": statistics.fmean(acc),
            "f1": f1,
            "val_acc": [p["validation"]["accuracy"] for p in picked],
            "lr": "/".join(f"{lr:g}" for lr in lrs),
            "trainable": s[0]["trainable_params"],
            "trainable_pct": s[0]["trainable_pct"],
            "epoch_s": [x["time_per_epoch_s"] for x in s],
            "step_s": [x["steady_step_s"] for x in s if x["steady_step_s"] is not None],
            "rss": [x["peak_memory_bytes"] / 2**20 for x in s],
            "pooling": picked[0].get("pooling_resolved"),
            "precision": s[0].get("precision"),
            "device": s[0].get("device"),
            "best_epochs": [p["best_step"] for p in picked],
            "cache": sorted({str(x.get("cache")) for x in s}),
            "sts_after": [x["retention_after"] for x in s if x.get("retention_after") is not None],
            "sts_before": [x["retention_before"] for x in s if x.get("retention_before") is not None],
            "versions": sorted({json.dumps(p.get("library", "not recorded"), sort_keys=True) for p in picked}),
            "per_seed": {p["config"]["seed"]: round(p["summary"]["accuracy"], 4) for p in picked},
        }
        rows.append((label, agg))

    m = meta.get("machine", {})
    lines = [
        "# SST-2, 1,000 training rows, all-MiniLM-L6-v2: freezetune vs the reference table",
        "",
        f"Generated {meta.get('date', '?')} by `bench/sst2_core.py`.",
        "",
        f"- Machine: {m.get('cpu', '?')}, {m.get('cores_usable', '?')} usable cores "
        f"(shared with other jobs; run under `nice -n 10`), torch {m.get('torch', '?')} (CPU), "
        f"torch threads = {args.threads}, Python {m.get('python', '?')}.",
        f"- Command: `{meta.get('command', '?')}`",
        f"- Wall time of the last invocation: {meta.get('invocation_wall_s', 0) / 60:.1f} min "
        f"({meta.get('runs_this_invocation', 0)} runs trained, the rest from the cache); "
        f"sum of the per-run wall times in the table: {meta.get('sum_run_wall_s', 0) / 60:.1f} min.",
        "- Invocations that trained runs: "
        + "; ".join(
            f"{i.get('started', '?')} → {i['ended']} ({i['wall_s'] / 60:.0f} min, {i['runs_trained']} runs"
            + (f", {i['note']}" if i.get("note") else "") + ")"
            for i in meta.get("invocations", [])
        )
        + ".",
        f"- Data: SST-2 train, stratified sample of {args.rows} rows drawn with the run seed "
        f"(so each seed sees a *different* {args.rows:,}-row sample); a stratified 10 % of it (same seed) "
        f"is the validation set: {meta.get('train_rows', '?')} rows train, "
        f"{meta.get('validation_rows', '?')} validate (best epoch, restored at the end). "
        f"Test = SST-2 dev ({meta.get('test_rows', '?')} rows): all accuracies below are on it.",
        f"- Training: batch {args.batch_size}, max length {args.max_length}, {args.epochs} epochs, "
        "AdamW (wd 0.01, not on biases/norms), 6 % linear warm-up then linear decay, clip 1.0, "
        "fp32 on CPU; learning rate = freezetune's default for the plan; seeds "
        + ", ".join(map(str, seeds)) + ".",
        "",
        "| plan | pooling | test acc (mean ± std) | per seed | macro-F1 | val acc | lr | trainable params | "
        "time/epoch (s) | steady step (s) | peak RSS (MiB) | prefix cache | ref (CLS table) | Δ | "
        "ref (mean-pooled table) | Δ |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    sts_lines = [
        "",
        "### Retention: STS-B Spearman after fine-tuning (mean-pooled last layer, cosine)",
        "",
        "| plan | STS-B before | STS-B after (mean ± std) | ref (CLS table) | ref (mean-pooled table) |",
        "| --- | --- | --- | --- | --- |",
    ]
    versions: set[str] = set()
    for label, agg in rows:
        ref = REFERENCE.get(label, {})
        if agg is None:
            lines.append(f"| {label} | – | not run | | | | | | | | | | {ref.get('cls') or '–'} | | {ref.get('mean') or '–'} | |")
            continue
        versions.update(agg["versions"])
        sts_ref_c, sts_ref_m = ref.get("sts_cls"), ref.get("sts_mean")
        sts_lines.append(
            f"| {label} | {fmt_mean_std(agg['sts_before'])} | {fmt_mean_std(agg['sts_after'])} | "
            f"{'–' if sts_ref_c is None else f'{sts_ref_c:.2f}'} | {'–' if sts_ref_m is None else f'{sts_ref_m:.2f}'} |"
        )
        mean_ref = ref.get("mean")
        mean_ref_txt = "–" if mean_ref is None else f"{mean_ref:.3f} ({ref['mean_row']})"
        cls_ref = ref.get("cls")
        lines.append(
            f"| {label} | {agg['pooling']} | {fmt_mean_std(agg['acc'])} (n={agg['n']}) | "
            + " / ".join(f"{v:.3f}" for v in agg["per_seed"].values())
            + f" | {fmt_mean_std(agg['f1'])} | {fmt_mean_std(agg['val_acc'])} | {agg['lr']} | "
            f"{agg['trainable']:,} ({agg['trainable_pct']:.1f} %) | {fmt_mean_std(agg['epoch_s'], 1)} | "
            f"{fmt_mean_std(agg['step_s'], 3)} | {fmt_mean_std(agg['rss'], 0)} | {'/'.join(agg['cache'])} | "
            f"{'–' if cls_ref is None else f'{cls_ref:.3f}'} | {fmt_diff(agg['acc_mean'], cls_ref)} | "
            f"{mean_ref_txt} | {fmt_diff(agg['acc_mean'], mean_ref)} |"
        )
    lines += sts_lines
    lines += [
        "",
        "STS-B is measured by freezetune's retention measure (`retention=auto` -> sts) on 500 evenly spread pairs "
        "of STS-B dev (`retention_limit=500`); the reference used all 1,500 pairs. 'before' is the untouched model "
        "on the same 500 pairs.",
        "",
        "freezetune version(s) that trained these runs (each job pins one snapshot of src/ at start): "
        + "; ".join(f"`{v}`" for v in sorted(versions)) + ".",
    ]
    lines += [
        "",
        "Std is the sample standard deviation over seeds. Δ = our mean minus the reference. Time per epoch "
        "includes nothing but the training steps of the epoch (freezetune's StepTimer); steady step is the median "
        "step after the first 5. Peak RSS is the resident set size of the forked child process that trained "
        "the run, sampled every 20 ms by freezetune's PeakMemory during fit() — it includes the Python/torch/"
        "transformers runtime and the tokenized data inherited from the parent, not just the training state. "
        "CPU timings are on a 2-core machine shared with other work and are indicative only.",
        "",
        "## Deviations from the reference protocol",
        "",
        "- CPU, fp32, 2 threads here; the reference ran on an H100 with bf16 autocast.",
        "- One learning rate per plan, freezetune's default (1e-4 when more than a third of the blocks or the "
        "embeddings train, 3e-4 for top_k:2, 3e-3 head only), instead of the best of two rates "
        "({3e-5, 1e-4} full/half-frozen, {1e-4, 3e-4} top-k, {1e-3, 3e-3} head). The defaults are the upper "
        "ends of those pairs, which the reference says were the best ones, and are the same rates the "
        "mean-pooled table used.",
        "- 3 seeds (0, 1, 2) instead of 2; each seed draws its own 1,000-row sample (the reference does not "
        "say whether its sample was fixed across seeds).",
        "- Only 900 of the 1,000 rows train: 100 are held out as validation to pick the best epoch, which "
        "is restored before testing on SST-2 dev. The reference does not describe a held-out validation set.",
        "- Pooling: full, lower_half, alternate and top_k:2 here use the model's own mean pooling with a plain "
        "linear head (freezetune's default), while the main reference table used BertForSequenceClassification "
        "(CLS pooler + classifier) for every row; so the mean-pooled table (full, d3 = lower_half, "
        "d4 = top 2 layers, d6 = head only) is the like-for-like comparison for those rows. alternate has "
        "no mean-pooled reference. `head_only (cls)` (pooler + classifier train) matches the main table's "
        "head-only row.",
        "- freezetune puts the frozen prefix in eval mode (no dropout there) while the trainable part trains; "
        "plain `requires_grad` freezing in the reference presumably left dropout on everywhere.",
        "- Padding to the longest example in each batch (no length bucketing). Plans with a frozen prefix use "
        "freezetune's frozen-prefix cache (`cache=auto`: the frozen embeddings + blocks run once, their outputs are "
        "reused every epoch), which changes their time per epoch, not what they compute beyond float rounding.",
        "- Records from a first invocation that ran an older freezetune (before the frozen-prefix cache and the "
        "retention measure) are kept under `superseded` in the JSON and were trained again; the table uses only "
        "the current ones.",
    ]
    failures = results.get("failures", {})
    if failures:
        lines += ["", "## Failed runs", ""]
        for key, f in failures.items():
            lines.append(f"- {f['config']}: see `failures.{key}` in sst2_core.json")
    return "\n".join(lines) + "\n"


def run_config(args, strategy: str, pooling: str, seed: int) -> dict:
    return {
        "strategy": strategy,
        "pooling": pooling,
        "seed": seed,
        "rows": args.rows,
        "epochs": args.epochs,
        "lr": args.lr,  # None: freezetune's default for the plan
        "max_length": args.max_length,
        "batch_size": args.batch_size,
        "validation_fraction": 0.1,
        "model": "all-MiniLM-L6-v2",
        "data": "glue/SST-2",
        "precision": "fp32",
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--lr", type=float, default=None, help="default: freezetune's per-plan default")
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--plans", default=",".join(label for label, _, _ in PLANS), help="comma-separated plan labels")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--results", type=Path, default=RESULTS / "sst2_core.json")
    p.add_argument("--report", type=Path, default=None, help="default: the --results path with .md")
    p.add_argument("--no-fork", action="store_true", help="train in this process (peak RSS then accumulates)")
    p.add_argument("--report-only", action="store_true")
    args = p.parse_args()
    report_path = args.report or args.results.with_suffix(".md")
    seeds = [int(s) for s in args.seeds.split(",")]
    wanted = [s.strip() for s in args.plans.split(",")]
    by_label = {label: (label, strategy, pooling) for label, strategy, pooling in PLANS}
    unknown = [w for w in wanted if w not in by_label]
    if unknown:
        p.error(f"unknown plan(s) {unknown}; choose from {list(by_label)}")
    plans = [by_label[w] for w in wanted]

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    torch.set_num_threads(args.threads)
    shared = defaults.shared_data_dir()
    if shared is None:
        print("../shared/data not found: nothing to benchmark", file=sys.stderr)
        return 1
    train_path = shared / "glue" / "SST-2" / "train.tsv"
    test_path = shared / "glue" / "SST-2" / "dev.tsv"

    results = load_results(args.results)
    results.setdefault("runs", {})
    results.setdefault("meta", {})
    started = time.perf_counter()
    global START_ISO
    START_ISO = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    trained = 0
    if not args.report_only:
        # Records without retention numbers came from a freezetune older than the frozen-prefix cache and
        # the retention measure (the first invocation of this job): keep them aside and train them again.
        for key in [k for k, r in results["runs"].items() if "retention_after" not in r["summary"]]:
            results.setdefault("superseded", {})[key] = results["runs"].pop(key)

    if not args.report_only:
        model_path = defaults.default_model_path()
        tokenizer = load_tokenizer(model_path)
        for seed in seeds:
            todo = []
            for label, strategy, pooling in plans:
                cfg = run_config(args, strategy, pooling, seed)
                key = config_key(cfg)
                if key in results["runs"]:
                    print(f"[cached] {label} seed {seed} ({key})", flush=True)
                else:
                    todo.append((label, strategy, pooling, cfg, key))
            if not todo:
                continue
            t0 = time.perf_counter()
            data = load_classification_data(
                train_path,
                tokenizer=tokenizer,
                text_column="sentence",
                label_column="label",
                test_path=test_path,
                max_length=args.max_length,
                validation_fraction=0.1,
                seed=seed,
                max_train_rows=args.rows,
            )
            print(
                f"seed {seed}: tokenized {len(data.train)} train / {len(data.validation)} validation / "
                f"{len(data.test)} test rows in {time.perf_counter() - t0:.1f}s; truncated {data.truncated}",
                flush=True,
            )
            for label, strategy, pooling, cfg, key in todo:
                spec = RunSpec(
                    strategy=strategy,
                    data=DataConfig(
                        data=str(train_path),
                        test_data=str(test_path),
                        text_column="sentence",
                        label_column="label",
                        max_length=args.max_length,
                        max_train_rows=args.rows,
                        validation_fraction=0.1,
                        retention_limit=500,  # STS-B: 500 evenly spread pairs keep each run's cost small
                    ),
                    model=ModelConfig(model=model_path, pooling=pooling),
                    train=TrainConfig(
                        lr=args.lr,
                        epochs=args.epochs,
                        batch_size=args.batch_size,
                        seed=seed,
                        precision="fp32",
                        progress=False,
                    ),
                )
                print(f"[run] {label} seed {seed} ({key}) ...", flush=True)
                out = run_one(spec, data, tokenizer, args.threads, fork=not args.no_fork)
                trained += 1
                if not out.pop("ok"):
                    print(f"[FAILED] {label} seed {seed}:\n{out['traceback']}", flush=True)
                    results.setdefault("failures", {})[key] = {"config": cfg, "label": label, **out}
                    save_results(args.results, results)
                    continue
                results.get("failures", {}).pop(key, None)
                results["runs"][key] = {"config": cfg, "label": label, "library": LIBRARY, **out}
                results["meta"].update(
                    train_rows=out["data"]["train_rows"],
                    validation_rows=out["data"]["validation_rows"],
                    test_rows=out["data"]["test_rows"],
                )
                save_results(args.results, results)
                s = out["summary"]
                print(
                    f"[done] {label} seed {seed}: test acc {s['accuracy']:.4f} F1 {s['macro_f1']:.4f} "
                    f"val acc {out['validation']['accuracy']:.4f} lr {s['lr']:g} "
                    f"{s['time_per_epoch_s']:.1f}s/epoch step {s['steady_step_s']:.3f}s "
                    f"RSS {s['peak_memory_bytes'] / 2**20:.0f}MiB wall {out['run_wall_s']:.0f}s",
                    flush=True,
                )

    if trained:
        results["meta"].setdefault("invocations", []).append(
            {
                "started": START_ISO,
                "ended": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                "wall_s": round(time.perf_counter() - started, 1),
                "runs_trained": trained,
                "library": LIBRARY,
            }
        )
    if trained or not results["meta"].get("date"):
        results["meta"].update(
            date=dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            command="nice -n 10 env HF_HUB_OFFLINE=1 .venv/bin/python " + shlex.join(["bench/sst2_core.py", *sys.argv[1:]]),
            machine=machine(),
            invocation_wall_s=time.perf_counter() - started,
            runs_this_invocation=trained,
        )
    selected = [
        results["runs"][k]
        for k in (config_key(run_config(args, s, pl, seed)) for _, s, pl in plans for seed in seeds)
        if k in results["runs"]
    ]
    results["meta"]["sum_run_wall_s"] = sum(r["run_wall_s"] for r in selected)
    if not args.report_only or args.results.is_file():
        save_results(args.results, results)
    report = build_report(results, args, plans, seeds)
    report_path.write_text(report)
    print()
    print(report)
    return 1 if results.get("failures") else 0


if __name__ == "__main__":
    sys.exit(main())
