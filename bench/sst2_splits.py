"""SST-2 splits shared by the schedule evidence: 2,000 stratified training rows and 500 *other*
training rows for validation (the same for every plan), seed 0; the GLUE dev set is the test set.

Writes bench/.cache/sst2/{train2000,val500}.tsv (ignored by git) from ../shared/data; skips
cleanly when that folder is absent.
"""

import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT.parent / "shared" / "data" / "glue" / "SST-2" / "train.tsv"
OUT = ROOT / "bench" / ".cache" / "sst2"


def stratified(frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    share = rows / len(frame)
    parts = [group.sample(n=round(len(group) * share), random_state=seed) for _, group in frame.groupby("label")]
    return pd.concat(parts).sample(frac=1.0, random_state=seed)


def main() -> int:
    if not SOURCE.is_file():
        print(f"skipped: {SOURCE} is absent", file=sys.stderr)
        return 0
    frame = pd.read_csv(SOURCE, sep="\t", quoting=3)
    train = stratified(frame, 2000, seed=0)
    rest = frame.drop(train.index)
    val = stratified(rest, 500, seed=0)
    OUT.mkdir(parents=True, exist_ok=True)
    train.to_csv(OUT / "train2000.tsv", sep="\t", index=False)
    val.to_csv(OUT / "val500.tsv", sep="\t", index=False)
    print(f"wrote {len(train)} training and {len(val)} validation rows to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
