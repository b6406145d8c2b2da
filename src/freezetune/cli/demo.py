"""``make demo``: five plans on the embedded tweets and MiniLM at two training sizes, ending with the report.

A ``freezetune compare`` with a learning curve: full, head_only, lower_half, top_k:2 and LoRA,
two seeds each, on stratified samples of 200 and 800 tweets (a fifth of each held out for
validation), so the report can say whether this data is in the regime where freezing wins.
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
    parser.add_argument("--train-sizes", default="200,800", help="training sizes of the learning curve")
    parser.add_argument("--seeds", type=int, default=2, help="seeds per plan and size")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run")
    parser.add_argument("--output", default="demo-runs", help="folder of the comparison (finished runs are reused)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    print(f"freezetune demo: {len(STRATEGIES)} plans x {args.seeds} seeds x training sizes {args.train_sizes} on "
          "the embedded tweets (negative/neutral/positive) with all-MiniLM-L6-v2", flush=True)
    compare = ["compare", *(f"--strategy={s}" for s in STRATEGIES), "--seeds", str(args.seeds),
               "--train-sizes", args.train_sizes, "--validation-fraction", "0.2", "--max-length", "64",
               "--epochs", str(args.epochs), "--bucket", "--retention-limit", "500", "--no-progress",
               "--output", args.output]
    code = freezetune(compare)
    if code == 0:
        print(f"demo done in {(time.perf_counter() - started) / 60:.1f} min; open {args.output}/report.html")
    return code


if __name__ == "__main__":
    sys.exit(main())
