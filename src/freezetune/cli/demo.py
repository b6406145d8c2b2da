"""``make demo``: five plans on the embedded tweets and MiniLM at two training sizes, ending with the report.

A ``freezetune compare`` with a learning curve: full, head_only, lower_half, top_k:2 and LoRA,
two seeds each, on stratified samples of 300 and 900 tweets (a fifth of each held out for
validation), so the report can say whether this data is in the regime where freezing wins.
Batches of 16 for 2 epochs: the smaller size then gets 30 optimizer steps, enough for the plans
that train blocks to learn something (at 200 rows, 3 epochs of 32, every plan stayed at the
majority class). A plan that still learns nothing is marked so in the report.
Runs are kept in ``demo-runs/``; a second ``make demo`` reuses them and rebuilds the report.
"""

from __future__ import annotations

import argparse
import sys
import time

from freezetune.cli.main import main as freezetune

STRATEGIES = ("full", "head_only", "lower_half", "top_k:2", "lora:r=8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m freezetune.cli.demo", description=__doc__)
    parser.add_argument("--train-sizes", default="300,900", help="training sizes of the learning curve")
    parser.add_argument("--seeds", type=int, default=2, help="seeds per plan and size")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per run")
    parser.add_argument("--batch-size", type=int, default=16, help="training rows per optimizer step")
    parser.add_argument("--output", default="demo-runs", help="folder of the comparison (finished runs are reused)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    print(f"freezetune demo: {len(STRATEGIES)} plans x {args.seeds} seeds x training sizes {args.train_sizes} on "
          "the embedded tweets (negative/neutral/positive) with all-MiniLM-L6-v2", flush=True)
    compare = ["compare", *(f"--strategy={s}" for s in STRATEGIES), "--seeds", str(args.seeds),
               "--train-sizes", args.train_sizes, "--validation-fraction", "0.2", "--max-length", "64",
               "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--bucket",
               "--retention-limit", "300", "--no-progress", "--output", args.output]
    code = freezetune(compare)
    if code == 0:
        print(f"demo done in {(time.perf_counter() - started) / 60:.1f} min; open {args.output}/report.html")
    return code


if __name__ == "__main__":
    sys.exit(main())
