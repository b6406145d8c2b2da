#!/usr/bin/env bash
# What the frozen-prefix cache's options cost in accuracy and buy in time: the same sweep as
# bench/compare_sst2.sh (SST-2, 2,000 rows, max length 64, dev as test, 3 seeds, STS-B 500 pairs),
# for top_k:2 and lower_half at their default rates, with the cached states stored as fp32 (the
# runs of compare_sst2.sh, reused through the shared run store), bf16 and fp16, and with
# length-bucketed batches (fp32). Tables land in bench/results/cache_storage_*.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
SST2=../shared/data/glue/SST-2
RUNS=bench/.cache/compare_sst2/runs
mkdir -p bench/results
sweep() {  # $1 = name, then extra flags
  local name=$1; shift
  HF_HUB_OFFLINE=1 .venv/bin/freezetune --log-level warning compare \
    --data "$SST2/train.tsv" --test-data "$SST2/dev.tsv" --text-column sentence --label-column label \
    --max-train-rows 2000 --max-length 64 --epochs 3 --batch-size 32 --seeds 3 \
    --retention-limit 500 --no-progress --strategy top_k:2 --strategy lower_half \
    --runs "$RUNS" --output "bench/.cache/cache_storage/$name" "$@"
  cp "bench/.cache/cache_storage/$name/results.txt" "bench/results/cache_storage_$name.txt"
}
sweep fp32
sweep bf16 --cache-dtype bf16
sweep fp16 --cache-dtype fp16
sweep bucket --bucket
