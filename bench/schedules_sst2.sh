#!/usr/bin/env bash
# Schedules against full fine-tuning and the best static plan on SST-2 (../shared/data):
# 2,000 stratified training rows, 500 other training rows validate (the same for every plan),
# GLUE dev as test, max length 64, 3 epochs of 63 steps, batch 32, each plan's default rate,
# 3 seeds, STS-B retention on 500 spread pairs. Phase lengths cover the run: LIFT walks all six
# blocks top-down once (31 steps each), gradual unfreezing opens a block every 27 steps.
# Runs live in bench/.cache/schedules_sst2 (ignored by git) and are reused on a rerun.
set -euo pipefail
cd "$(dirname "$0")/.."
SST2=../shared/data/glue/SST-2
OUT=bench/.cache/schedules_sst2
.venv/bin/python bench/sst2_splits.py
STRATEGIES=()
for s in "${@:-full top_k:2 lift:steps=31 gradual_unfreeze:steps=27}"; do for x in $s; do STRATEGIES+=(--strategy "$x"); done; done
HF_HUB_OFFLINE=1 nice -n 10 .venv/bin/freezetune --log-level warning compare \
  --data bench/.cache/sst2/train2000.tsv --eval-data bench/.cache/sst2/val500.tsv --test-data "$SST2/dev.tsv" \
  --text-column sentence --label-column label --max-length 64 --epochs 3 --batch-size 32 --seeds 3 \
  --retention-limit 500 --no-progress "${STRATEGIES[@]}" --output "$OUT" --runs bench/.cache/schedules_sst2_runs
mkdir -p bench/results
for f in results.txt results.csv results.json; do cp "$OUT/$f" "bench/results/schedules_sst2_$f"; done
