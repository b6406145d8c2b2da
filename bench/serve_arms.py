"""The arms of bench/serve.py, one per process (peak and resident memory never go down within one).

    .venv/bin/python bench/serve_arms.py ARM CHECKPOINT_DIR [--port P] [...]

prints one JSON object. Arms:

* ``rss-serve:N``: the server's loading (``load_bases``) of the first N checkpoints, one warm batch;
  resident memory (VmRSS) and what the checkpoints add.
* ``rss-separate:N``: N separate models (``load_checkpoint`` each: a transformers model plus its head),
  one warm batch each; resident memory.
* ``engine``: the trunk without HTTP, on one batch of tweets: one call for all tasks (fan-out) against
  one call per task, one after another, and against N separate models, one after another.
* ``http-serve`` / ``http-separate``: the server behind the load generator (bench/serve.py starts them).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def tweets(n: int, seed: int = 0) -> list[str]:
    import pandas as pd

    from freezetune.io.defaults import default_data_path

    frame = pd.read_csv(default_data_path(), encoding="latin-1").dropna(subset=["text"])
    return frame["text"].astype(str).sample(n, random_state=seed).tolist()


def folders(root: str) -> list[Path]:
    return sorted(p for p in Path(root).iterdir() if (p / "checkpoint.json").is_file())


def trim() -> None:
    import gc

    from freezetune.core.memory import release_free_memory

    gc.collect()
    release_free_memory()


def rss_serve(root: str, n: int) -> dict:
    import torch

    from freezetune.serve.loading import load_bases
    from freezetune.serve.trunk import Batch, classify

    torch.set_num_threads(os.cpu_count() or 1)
    start = rss_mib()
    bases = load_bases([f"t{i}={p}" for i, p in enumerate(folders(root)[:n])])
    base = bases[0]
    texts = tweets(32)
    encoded = base.tokenizer(texts, truncation=True, max_length=64)
    rows = [(ids, types) for ids, types in zip(encoded["input_ids"], encoded["token_type_ids"])]
    classify(base, Batch.collate(rows, {name: list(range(len(rows))) for name in base.tasks},
                                 base.tokenizer.pad_token_id))
    trim()
    return {"arm": f"rss-serve:{n}", "rss_mib": rss_mib(), "rss_before_load_mib": start,
            "base_mib": base.bytes / 2**20, "own_mib": {k: t.own_bytes / 2**20 for k, t in base.tasks.items()}}


def separate_models(root: str, n: int):
    from freezetune.io.checkpoint import load_checkpoint

    models = []
    tokenizer = None
    for path in folders(root)[:n]:
        model, tokenizer, _ = load_checkpoint(path)
        models.append(model)
    return models, tokenizer


def rss_separate(root: str, n: int) -> dict:
    import torch

    start = rss_mib()
    models, tokenizer = separate_models(root, n)
    inputs = tokenizer(tweets(32), truncation=True, max_length=64, padding=True, return_tensors="pt")
    with torch.no_grad():
        for model in models:
            model(**inputs)
    trim()
    return {"arm": f"rss-separate:{n}", "rss_mib": rss_mib(), "rss_before_load_mib": start}


def timed(fn, repeats: int) -> list[float]:
    fn()  # warm
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def engine(root: str, rows_per_request: int = 32, repeats: int = 10) -> dict:
    import statistics

    import torch

    from freezetune.serve.loading import load_bases
    from freezetune.serve.trunk import Batch, classify

    bases = load_bases([f"t{i}={p}" for i, p in enumerate(folders(root))])
    base = bases[0]
    names = list(base.tasks)
    encoded = base.tokenizer(tweets(rows_per_request, seed=1), truncation=True, max_length=64)
    rows = [(ids, types) for ids, types in zip(encoded["input_ids"], encoded["token_type_ids"])]
    batch_all = Batch.collate(rows, {n: list(range(len(rows))) for n in names}, base.tokenizer.pad_token_id)
    singles = [Batch.collate(rows, {n: list(range(len(rows)))}, base.tokenizer.pad_token_id) for n in names]
    fan = timed(lambda: classify(base, batch_all), repeats)
    one_by_one = timed(lambda: [classify(base, b) for b in singles], repeats)
    models, tokenizer = separate_models(root, len(names))
    inputs = tokenizer(tweets(rows_per_request, seed=1), truncation=True, max_length=64, padding=True,
                       return_tensors="pt")

    def separate():
        with torch.no_grad():
            for model in models:
                model(**inputs)

    apart = timed(separate, repeats)
    median = statistics.median
    return {"arm": "engine", "tasks": len(names), "rows": rows_per_request, "repeats": repeats,
            "fan_out_s": median(fan), "one_by_one_s": median(one_by_one), "separate_models_s": median(apart),
            "fan_out_all_s": fan, "one_by_one_all_s": one_by_one, "separate_models_all_s": apart}


def http_separate(root: str, port: int) -> None:
    """A baseline server: N separate models in one process, one FastAPI route, one request at a time."""
    import threading

    import torch
    import uvicorn
    from fastapi import FastAPI

    models, tokenizer = separate_models(root, len(folders(root)))
    names = [f"t{i}" for i in range(len(models))]
    lock = threading.Lock()  # one forward at a time, as the server's worker does
    app = FastAPI()

    @app.post("/v1/classify")
    def classify(body: dict):
        wanted = [body["model"]] if isinstance(body["model"], str) else body["model"]
        texts = [body["input"]] if isinstance(body["input"], str) else body["input"]
        inputs = tokenizer(texts, truncation=True, max_length=128, padding=True, return_tensors="pt")
        out = {}
        with lock, torch.no_grad():
            for name in wanted:
                probs = torch.softmax(models[names.index(name)](**inputs).float(), -1)
                out[name] = [{"index": i, "probs": p.tolist()} for i, p in enumerate(probs)]
        return {"data": out[wanted[0]] if isinstance(body["model"], str) else out}

    @app.get("/health")
    def health():
        return {"status": "ok"}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def main(argv: list[str]) -> None:
    arm, root = argv[0], argv[1]
    kind, _, count = arm.partition(":")
    if kind == "rss-serve":
        result = rss_serve(root, int(count))
    elif kind == "rss-separate":
        result = rss_separate(root, int(count))
    elif kind == "engine":
        result = engine(root)
    elif kind == "http-separate":
        http_separate(root, int(argv[2]))
        return
    else:
        raise SystemExit(f"unknown arm {arm}")
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
