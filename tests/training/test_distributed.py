"""Data parallelism: two CPU processes under torchrun train as one process does on the same global batch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import freezetune
from freezetune.core.config import DataConfig, ModelConfig, TrainConfig
from freezetune.io.loader import ShardedBatchSampler
from freezetune.runs.run import run_training
from freezetune.runs.spec import RunSpec
from freezetune.training.distributed import Ranks

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def no_dropout_model(tmp_path_factory):
    """A tiny BERT without dropout (so two processes and one draw nothing random) and MiniLM's tokenizer."""
    import shutil

    from transformers import BertConfig, BertModel

    from freezetune.io.defaults import default_model_path

    folder = tmp_path_factory.mktemp("tiny-bert-no-dropout")
    torch.manual_seed(0)
    config = BertConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
                        vocab_size=30522, max_position_embeddings=128, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)
    BertModel(config).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (Path(default_model_path()) / name).exists():
            shutil.copy(Path(default_model_path()) / name, folder / name)
    return str(folder)


def _spec(model: str, data: Path, output: Path, batch_size: int) -> RunSpec:
    # 58 training rows: 8 steps an epoch at a global batch of 8 (the last one of 2 rows), so 10 steps
    # span two epochs and the frozen-prefix cache (top_k:2 freezes blocks 0-1) is on.
    return RunSpec("top_k:2", DataConfig(data=str(data), retention="none", max_length=16), ModelConfig(model=model),
                   TrainConfig(batch_size=batch_size, max_steps=10, lr=1e-3, keep_best=False, progress=False),
                   str(output))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one_on_the_same_global_batch(no_dropout_model, sentiment_csv, tmp_path):
    one = tmp_path / "one"
    run_training(_spec(no_dropout_model, sentiment_csv, one, batch_size=8))

    two = tmp_path / "two"
    spec = json.dumps(asdict(_spec(no_dropout_model, sentiment_csv, two, batch_size=4)))
    src = str(Path(freezetune.__file__).parents[1])
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([src, str(HERE)])}
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
               "--master_port", str(_free_port()), str(HERE / "data_parallel_run.py"), spec, str(tmp_path)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]

    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [(r["rank"], r["world"], r["shard"]) for r in ranks] == [(0, 2, ["0/2"]), (1, 2, ["1/2"])]
    # Each rank cached only its own training rows; together they are every row, once.
    assert ranks[0]["cached"] == list(range(0, 58, 2)) and ranks[1]["cached"] == list(range(1, 58, 2))
    assert ranks[0]["train_rows"] == 58 and ranks[0]["cache"].startswith("on: boundary 2")

    expected = load_file(one / "checkpoint" / "trained.safetensors")
    got = load_file(two / "checkpoint" / "trained.safetensors")
    assert sorted(got) == sorted(expected) and len(got) > 0
    for name in expected:
        assert torch.allclose(got[name], expected[name], atol=1e-4, rtol=0), name
    # Rank 0 alone wrote the run folder: one record per evaluation, not one per rank.
    records = [json.loads(line) for line in (two / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "eval"] == [8, 10]
    assert json.loads((two / "metrics.json").read_text())["costs"]["steps"] == 10


def test_each_rank_gets_its_own_rows_of_every_batch_weighted_by_its_share():
    batches = [[5, 2, 7, 1], [4, 6], [3]]
    shards = [list(ShardedBatchSampler(batches, rank, 2)) for rank in (0, 1)]
    assert [list(s) for s in shards[0]] == [[2], [4, 6], [0]]  # no row of its own: its first row, at weight 0
    assert [list(s) for s in shards[1]] == [[5, 7, 1], [1], [3]]
    assert [s.weight for s in shards[0]] == [0.5, 2.0, 0.0]
    assert [s.weight for s in shards[1]] == [1.5, 0.0, 2.0]
    assert Ranks(1, 2).owned(5) == [1, 3]


def test_an_accelerate_config_that_shards_the_model_is_refused_in_one_line(monkeypatch):
    from freezetune.core.errors import FreezetuneError
    from freezetune.training.distributed import ranks

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    with pytest.raises(FreezetuneError, match="FSDP is not supported: choose multi-GPU"):
        ranks()
