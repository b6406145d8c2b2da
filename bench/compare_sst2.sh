#!/usr/bin/env bash
# Runs-you-can-sweep evidence: `freezetune compare` on SST-2 (../shared/data), 2,000 training rows
# (stratified; 10% of them validate), max length 64, dev set as test, 3 seeds, --lr-grid auto
# (each plan's default rate x 1/3, 1, 3, chosen on validation), STS-B retention on 500 spread pairs.
# Finished runs live in bench/.cache/compare_sst2 (ignored by git) and are reused on a rerun;
# the tables are copied to bench/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
SST2=../shared/data/glue/SST-2
OUT=bench/.cache/compare_sst2
HF_HUB_OFFLINE=1 .venv/bin/freezetune --log-level warning compare \
  --data "$SST2/train.tsv" --test-data "$SST2/dev.tsv" --text-column sentence --label-column label \
  --max-train-rows 2000 --max-length 64 --epochs 3 --batch-size 32 --seeds 3 --lr-grid auto \
  --retention-limit 500 --no-progress \
  --strategy head_only --strategy top_k:2 --strategy lower_half --strategy alternate --strategy full \
  --output "$OUT"
mkdir -p bench/results
for f in results.txt results.csv results.json; do cp "$OUT/$f" "bench/results/compare_sst2_$f"; done
