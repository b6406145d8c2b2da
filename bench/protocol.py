"""The shared evidence protocol (bench/protocol.yaml): task splits, run specs and the run store.

Every benchmark that trains plans goes through here, so their runs share one store:

- ``prepare(key)`` writes the task's seeded splits to ``bench/.cache/protocol/<key>/`` once;
- ``base_spec(key)`` is the RunSpec every plan of the task starts from;
- ``sweep(key, plans, seeds)`` trains what is not finished, through ``run_sweep``. Before it
  trains, every summary committed under ``bench/results/runs/<key>/`` is written back into the
  local store, so a fresh checkout on another machine retrains nothing; after it, every finished
  run's summary is committed there (a small JSON per run, keyed by plan, seed and rate).

    nice -n 5 .venv/bin/python bench/protocol.py                       # the oracle sweep, every task
    .venv/bin/python bench/protocol.py --tasks sst2_1000 --seeds 0     # a part of it
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pandas as pd  # noqa: E402
import yaml  # noqa: E402

from freezetune.core.config import DataConfig, ModelConfig, TrainConfig  # noqa: E402
from freezetune.io import defaults  # noqa: E402
from freezetune.runs.spec import RunSpec  # noqa: E402
from freezetune.runs.sweep import Sweep, run_folder, run_sweep  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
CACHE = ROOT / "bench" / ".cache" / "protocol"
STORE = ROOT / "bench" / ".cache" / "protocol_runs"
COMMITTED = ROOT / "bench" / "results" / "runs"
PROTOCOL = yaml.safe_load((ROOT / "bench" / "protocol.yaml").read_text())
log = logging.getLogger("freezetune")


def task(key: str) -> dict[str, Any]:
    return PROTOCOL["tasks"][key]


def fingerprint(key: str) -> str:
    """What decides a task's runs besides plan, seed and rate: its entry and the shared settings."""
    shared = {k: PROTOCOL[k] for k in ("max_length", "batch_size", "split_seed", "validation_rows", "retention")}
    text = json.dumps({"task": task(key), **shared}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# ---------------------------------------------------------------------- splits
def _read_source(entry: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """(training pool, GLUE dev or None) as data frames, read with quoting off like GLUE wants."""
    if entry["source"] == "embedded":
        return pd.read_csv(defaults.default_data_path(), encoding="latin-1")[["text", "sentiment"]], None
    folder = SHARED / entry["source"]
    if entry["source"].endswith("CoLA"):  # no header: source, label, original mark, sentence
        names = ["source", "label", "mark", "sentence"]
        read = lambda p: pd.read_csv(p, sep="\t", quoting=3, header=None, names=names)  # noqa: E731
    else:
        read = lambda p: pd.read_csv(p, sep="\t", quoting=3, encoding="utf-8-sig")  # noqa: E731
    return read(folder / "train.tsv"), read(folder / "dev.tsv")


def _clean(frame: pd.DataFrame, texts: list[str]) -> pd.DataFrame:
    """Tabs and line breaks inside a text (tweets have them) would split its row in a TSV."""
    frame = frame.copy()
    for column in texts:
        frame[column] = frame[column].astype("string").str.replace(r"\s+", " ", regex=True).str.strip()
    return frame


def _stratified(frame: pd.DataFrame, label: str, rows: int, seed: int) -> pd.DataFrame:
    share = rows / len(frame)
    parts = [group.sample(n=round(len(group) * share), random_state=seed) for _, group in frame.groupby(label)]
    return pd.concat(parts).sample(frac=1.0, random_state=seed)


def _setting(entry: dict[str, Any], name: str) -> Any:
    """A task's own value of a shared setting (the causal-LM task has its own), else the shared one."""
    return entry.get(name, PROTOCOL[name])


def _as_prompts(frame: pd.DataFrame, entry: dict[str, Any]) -> pd.DataFrame:
    answers = {str(k): v for k, v in entry["answers"].items()}
    return frame.assign(prompt=[entry["prompt"].format(text=t) for t in frame[entry["text"]]],
                        response=[answers[str(v)] for v in frame[entry["label"]]])


def prepare(key: str) -> Path:
    """Write the task's train/val/test splits once (seeded, disjoint); return their folder."""
    entry, out = task(key), CACHE / key
    if (out / "test.tsv").is_file():
        return out
    pool, test = _read_source(entry)
    texts = [entry["text"]] + ([entry["pair"]] if entry.get("pair") else [])
    pool, test = (None if f is None else _clean(f, texts) for f in (pool, test))
    pool = pool.dropna(subset=[*texts, entry["label"]])
    seed = PROTOCOL["split_seed"]
    train = _stratified(pool, entry["label"], entry["rows"], seed)
    rest = pool.drop(train.index)
    val = _stratified(rest, entry["label"], _setting(entry, "validation_rows"), seed)
    if test is None:  # no published test set: another disjoint seeded split
        test = _stratified(rest.drop(val.index), entry["label"], entry["test_rows"], seed)
    elif entry.get("test_rows"):  # a seeded part of the published test set
        test = _stratified(test, entry["label"], entry["test_rows"], seed)
    if entry.get("answers"):  # a causal LM: the label becomes the answer it writes
        train, val, test = (_as_prompts(f, entry) for f in (train, val, test))
    out.mkdir(parents=True, exist_ok=True)
    for name, frame in (("train", train), ("val", val), ("test", test)):
        frame.to_csv(out / f"{name}.tsv", sep="\t", index=False, quoting=3, escapechar="\\")
    return out


def base_spec(key: str) -> RunSpec:
    entry, folder = task(key), prepare(key)
    rel = lambda p: os.path.relpath(p, ROOT)  # noqa: E731 - paths in the spec (and its hash) stay machine-independent
    data = DataConfig(
        data=rel(folder / "train.tsv"), eval_data=rel(folder / "val.tsv"), test_data=rel(folder / "test.tsv"),
        text_column=entry["text"], text_pair_column=entry.get("pair"), label_column=entry["label"],
        max_length=PROTOCOL["max_length"], retention=PROTOCOL["retention"]["reference"],
        retention_limit=PROTOCOL["retention"]["limit"],
    )
    if entry.get("task") == "causal-lm":
        retention = _setting(entry, "retention")
        data = replace(data, task="causal-lm", text_column=None, label_column=None, prompt_column="prompt",
                       response_column="response", max_length=_setting(entry, "max_length"),
                       retention=retention["reference"], retention_limit=retention["limit"])
    # keep_best picks the epoch on the task's own validation metric (binary F1 is not monitored: accuracy)
    monitored = {"f1": "accuracy"}.get(entry["metric"], entry["metric"])
    train = TrainConfig(epochs=entry["epochs"], batch_size=_setting(entry, "batch_size"), metric=monitored,
                        progress=False)
    model = ModelConfig()
    if entry.get("model") == "smollm2":
        folder, gguf_file = defaults.smollm2_gguf()
        model = ModelConfig(model=folder, gguf_file=gguf_file)
    spec = RunSpec(data=data, model=model, train=train).resolved()
    return replace(spec, model=replace(spec.model, model=rel(spec.model.model)))


# ---------------------------------------------------------------------- the run store
def _name(strategy: str, seed: int, lr: float) -> str:
    return f"{strategy.replace(':', '_')}-seed{seed}-lr{lr:g}.json"


def restore(key: str, shelf: str | None = None) -> int:
    """Write every committed summary of the task back into the local run store; count them."""
    base, count, shelf = base_spec(key), 0, shelf or key
    for path in sorted((COMMITTED / shelf).glob("*.json")):
        saved = json.loads(path.read_text())
        if saved["fingerprint"] != fingerprint(key):
            continue  # the protocol changed since: that run is retrained
        spec = replace(base, strategy=saved["strategy"], train=replace(base.train, seed=saved["seed"], lr=saved["lr"]))
        folder = run_folder(STORE / shelf, spec)
        if not (folder / "metrics.json").is_file():
            folder.mkdir(parents=True, exist_ok=True)
            metrics = {k: saved[k] for k in ("summary", "validation", "test")}
            (folder / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
            count += 1
    return count


def adopt(key: str, shelf: str | None = None) -> int:
    """Move runs trained before the run hash last changed (a new option) to their current folders.

    A run is adopted when every setting its config.yaml names equals the current spec's (paths
    compared as written); options added since are at their defaults. Its checkpoint comes with
    it, so an evaluation set added later is scored on it instead of retraining. Counts them.
    """
    base, count, shelf = base_spec(key), 0, shelf or key
    for config in sorted((STORE / shelf).glob("*/config.yaml")):
        saved = yaml.safe_load(config.read_text()) or {}
        spec = replace(base, strategy=saved["strategy"], train=replace(base.train, seed=saved["seed"],
                                                                       lr=saved["lr"]))
        target = run_folder(STORE / shelf, spec)
        # pooling is saved resolved ("mean"), the spec asks for "auto"
        current = {k: v for k, v in spec.flat().items() if k not in ("output", "progress", "pooling")}
        same = all(_same(saved[k], v) for k, v in current.items() if k in saved)
        if target == config.parent or not same or not (config.parent / "checkpoint").is_dir():
            continue
        if (target / "checkpoint").is_dir():
            continue  # a current run is there already
        if target.exists():  # a summary restored from bench/results/runs: the real run replaces it
            for file in target.iterdir():
                file.unlink()
            target.rmdir()
        config.parent.rename(target)
        count += 1
    return count


def _same(saved: Any, current: Any) -> bool:
    if isinstance(saved, str) and isinstance(current, str) and os.path.isabs(current):
        return os.path.abspath(saved) == current
    return saved == current


def harvest(key: str, shelf: str | None = None) -> list[dict[str, Any]]:
    """Commit every run of the task trained here (a small JSON each); return every committed run."""
    shelf = shelf or key
    (COMMITTED / shelf).mkdir(parents=True, exist_ok=True)
    for config in sorted((STORE / shelf).glob("*/config.yaml")):  # restored runs have no config.yaml
        metrics_path = config.parent / "metrics.json"
        if not metrics_path.is_file():
            continue  # cut off: the next sweep trains it again
        metrics = json.loads(metrics_path.read_text())
        summary, seed = metrics["summary"], yaml.safe_load(config.read_text())["seed"]
        saved = {"fingerprint": fingerprint(key), "task": key, "strategy": summary["strategy"], "seed": seed,
                 "lr": summary["lr"], **{k: _slim(metrics[k]) for k in ("summary", "validation", "test")},
                 "eval_sets": {name: _slim(m) for name, m in (metrics.get("eval_sets") or {}).items()},
                 "epoch_times_s": metrics.get("costs", {}).get("epoch_times_s")}  # for the time to the best epoch
        costs = metrics.get("costs", {})
        saved.update({k: costs[k] for k in ("scoring_s", "retention_guard", "retention_retries")
                      if k in costs})  # what auto spent choosing and guarding
        (COMMITTED / shelf / _name(saved["strategy"], seed, saved["lr"])).write_text(json.dumps(saved, indent=1) + "\n")
    return committed(key, shelf)


def committed(key: str, shelf: str | None = None) -> list[dict[str, Any]]:
    """Every committed run of the task under the current protocol (on ``shelf``: a study's own runs)."""
    runs = [json.loads(p.read_text()) for p in sorted((COMMITTED / (shelf or key)).glob("*.json"))]
    return [r for r in runs if r["fingerprint"] == fingerprint(key)]


def rate_shelf(key: str) -> str:
    """Where bench/rate_grid.py keeps a task's runs at other rates than each plan's default."""
    return f"{key}@rates"


def rate_picked(key: str, plans: list[str], seeds: list[int]) -> dict[str, dict[int, dict[str, Any]]]:
    """Each plan's run per seed at the rate with the best validation metric, among its default-rate run
    (the protocol sweep's) and the rate study's (``rate_shelf``), as `compare --lr-grid` picks; a tie
    keeps the default."""
    name = task(key)["metric"]
    candidates: dict[str, dict[int, list[dict[str, Any]]]] = {p: {s: [] for s in seeds} for p in plans}
    for run in committed(key) + committed(key, rate_shelf(key)):  # the default-rate runs first
        if run["strategy"] in plans and run["seed"] in seeds:
            candidates[run["strategy"]][run["seed"]].append(run)
    missing = [(p, s) for p in plans for s in seeds if not candidates[p][s]]
    if missing:
        raise SystemExit(f"{key}: no run of {missing}: run bench/protocol.py --tasks {key} first")
    return {p: {s: max(runs, key=lambda r: metric(r, name, "validation")) for s, runs in by_seed.items()}
            for p, by_seed in candidates.items()}


def _slim(metrics: dict[str, Any] | None) -> dict[str, Any] | None:
    """Drop what no report reads (long per-step lists), keep the metrics and per-class scores."""
    if metrics is None:
        return None
    return {k: v for k, v in metrics.items() if not isinstance(v, list)}


def metric(run: dict[str, Any], name: str, split: str = "test") -> float:
    """A task metric of one committed run: accuracy, mcc, macro_f1, or f1 (the positive class '1')."""
    values = run[split]
    if name == "f1":
        return values["per_class"]["1"]["f1"]
    return values[name]


def sweep(key: str, plans: list[str], seeds: list[int], lr: float | None = None, lr_grid: str | None = None,
          shelf: str | None = None) -> list[dict[str, Any]]:
    """Train every (plan, seed) of the task not yet finished; commit and return every finished run.

    ``lr_grid`` ("1e-4,3e-4") trains each at every rate listed; ``shelf`` keeps a study's runs apart
    from the protocol's (bench/results/runs/<shelf>/), so that readers of the task's runs see one
    rate per plan.
    """
    shelf = shelf or key
    adopted = adopt(key, shelf)
    if adopted:
        log.info("%s: %d runs moved to their current folders", shelf, adopted)
    restored = restore(key, shelf)
    if restored:
        log.info("%s: %d runs restored from bench/results/runs/%s", shelf, restored, shelf)
    base = base_spec(key)
    if lr is not None:
        base = replace(base, train=replace(base.train, lr=lr))
    for plan in plans:  # one plan at a time, each committed as soon as it is done
        run_sweep(Sweep(strategies=[plan], base=base, seeds=seeds, lr_grid=lr_grid,
                        output=str(STORE / f"{shelf}_table"), runs=str(STORE / shelf)))
        harvest(key, shelf)
    return committed(key, shelf)


def log_progress() -> None:
    """freezetune's progress lines, timestamped, as every benchmark that trains shows them."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("freezetune").setLevel(logging.INFO)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=PROTOCOL["order"], choices=list(PROTOCOL["tasks"]))
    parser.add_argument("--plans", nargs="+", default=PROTOCOL["plans"])
    parser.add_argument("--seeds", nargs="+", type=int, default=PROTOCOL["seeds"])
    args = parser.parse_args()
    if not SHARED.is_dir():
        print(f"skipped: {SHARED} is absent", file=sys.stderr)
        return 0
    log_progress()
    for key in args.tasks:
        runs = sweep(key, args.plans, args.seeds)
        log.info("%s: %d runs committed under bench/results/runs/%s", key, len(runs), key)
    return 0


if __name__ == "__main__":
    sys.exit(main())
