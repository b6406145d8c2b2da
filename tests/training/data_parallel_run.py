"""Launched by torchrun from test_distributed.py: one data-parallel run, then what this rank saw.

Usage: data_parallel_run.py SPEC_JSON OUT_DIR. Trains the RunSpec in SPEC_JSON and writes
OUT_DIR/rank<R>.json with this rank's rank, world size and the training rows its cache holds.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch.distributed as dist

from freezetune.core.config import DataConfig, ModelConfig, TrainConfig
from freezetune.runs.run import RunCaches, run_training
from freezetune.runs.spec import RunSpec


def main(spec_json: str, out: str) -> None:
    raw = json.loads(spec_json)
    spec = RunSpec(raw["strategy"], DataConfig(**raw["data"]), ModelConfig(**raw["model"]),
                   TrainConfig(**raw["train"]), raw["output"])
    caches = RunCaches()
    result = run_training(spec, caches=caches)
    train_caches = [c for c in caches.prefix._caches.values() if c.key.shard]
    cached = [i for c in train_caches for i, n in enumerate(c.lengths.tolist()) if n > 0]
    rank, world = dist.get_rank(), dist.get_world_size()
    record = {"rank": rank, "world": world, "shard": [c.key.shard for c in train_caches], "cached": cached,
              "train_rows": result.data_summary["train_rows"], "cache": result.fit.costs["cache"]}
    (Path(out) / f"rank{rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main(*sys.argv[1:])
