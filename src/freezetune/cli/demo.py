"""``make demo``: five plans on the embedded tweets and MiniLM, side by side, in minutes on a CPU.

Runs full, head_only, lower_half, alternate and top_k:2 on the same stratified slice of the
default data (same split, same seed), saves each run under ``demo-runs/`` and prints one
comparison table with a recommendation.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from freezetune.core.config import DataConfig, TrainConfig
from freezetune.core.errors import FreezetuneError, report
from freezetune.core.model import load_tokenizer
from freezetune.measure.metrics import format_table
from freezetune.measure.units import format_duration
from freezetune.runs.run import RunSpec, load_data, run_training

STRATEGIES = ("full", "head_only", "lower_half", "alternate", "top_k:2")

COLUMNS = [
    ("strategy", "strategy", ""),
    ("accuracy", "val acc", ".3f"),
    ("macro_f1", "macro-F1", ".3f"),
    ("lr", "lr", ".0e"),
    ("trainable_params", "trainable", "count"),
    ("trainable_pct", "% params", ".1f"),
    ("frozen_prefix_depth", "frozen depth", ""),
    ("retention_after", "retention", ".3f"),
    ("time_per_epoch_s", "time/epoch", "duration"),
    ("steady_step_s", "step", "duration"),
    ("peak_memory_bytes", "peak memory", "bytes"),
]


def recommend(rows: list[dict], tolerance: float = 0.01) -> str:
    """The cheapest plan (fewest trainable parameters) within ``tolerance`` of the best accuracy."""
    best = max(rows, key=lambda r: r["accuracy"])
    close = [r for r in rows if r["accuracy"] >= best["accuracy"] - tolerance]
    pick = min(close, key=lambda r: r["trainable_params"])
    if pick is best:
        return f"recommendation: {best['strategy']} (best validation accuracy, {best['accuracy']:.3f})"
    return (
        f"recommendation: {pick['strategy']} — within {tolerance:.0%} of the best ({best['strategy']}, "
        f"{best['accuracy']:.3f}) while training {pick['trainable_params']:,} instead of "
        f"{best['trainable_params']:,} parameters"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m freezetune.cli.demo", description=__doc__)
    parser.add_argument("--rows", type=int, default=1200, help="rows sampled (stratified) from the default data")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per plan")
    parser.add_argument("--output", default="demo-runs", help="folder for the runs (replaced on each demo)")
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(message)s", level=logging.WARNING)
    import transformers

    transformers.logging.set_verbosity_error()
    started = time.perf_counter()
    # Retention on 500 STS-B pairs (when ../shared/data has them, else CKA) keeps the demo short.
    data_config = DataConfig(max_train_rows=args.rows, max_length=64, validation_fraction=0.2, retention_limit=500)
    train_config = TrainConfig(epochs=args.epochs, seed=0, bucket=True)
    base = RunSpec(data=data_config, train=train_config).resolved()
    try:
        tokenizer = load_tokenizer(base.model.model)
        data = load_data(base, tokenizer)
    except FreezetuneError as error:
        return report(error)
    print(
        f"freezetune demo: {len(STRATEGIES)} plans on {len(data.train)} training tweets "
        f"({', '.join(data.label_names)}), {len(data.validation)} for validation, all-MiniLM-L6-v2, "
        f"{args.epochs} epochs"
    )
    rows = []
    for index, strategy in enumerate(STRATEGIES, 1):
        print(f"[{index}/{len(STRATEGIES)}] {strategy} ...", flush=True)
        spec = RunSpec(
            strategy=strategy, data=base.data, model=base.model, train=base.train,
            output=f"{args.output}/{strategy.replace(':', '_')}", overwrite=True,
        )
        rows.append(run_training(spec, data=data, tokenizer=tokenizer).summary())
    print()
    print(format_table(rows, COLUMNS))
    if rows[0].get("retention_reference"):
        names = {"sts": "STS-B Spearman of mean-pooled embeddings (500 pairs)", "cka": "CKA to the base model"}
        kind = rows[0]["retention_reference"]
        print(f"retention = {names.get(kind, kind)}; the untrained base scores {rows[0]['retention_before']:.3f}")
    print()
    print(recommend(rows))
    print(
        "note: validation numbers (the split also picks each run's best epoch), so optimistic; "
        "pass --test-data to `freezetune train` for unbiased ones."
    )
    print(f"runs saved under {args.output}/; total {format_duration(time.perf_counter() - started)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
