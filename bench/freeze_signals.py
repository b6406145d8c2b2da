"""Candidate "freeze here" signals on the shared protocol, per task and seed (bench/protocol.yaml).

For each task and seed, on the seed's model and fresh head and its 256-row scoring sample (as
``auto`` sees them), this measures every candidate signal once and stores it under
bench/results/signals/<task>/seed<k>.json; bench/freeze_loto.py judges them leave-one-task-out
against the stored oracle runs. Nothing here trains a plan to the end.

Candidates:
- ``gradient``: the gradient scorer's per-block relative gradient norm and gradient noise scale
  (data support = training rows / noise scale);
- ``semantic`` and ``variability``: the forward traces (centroid readout deviation and accuracy, NC1);
- ``probe``: a ridge linear probe's cross-validated accuracy at every boundary (where it stops rising);
- ``drift``: a short probe of full fine-tuning (``PROBE_STEPS`` steps at full's default rate; first seed only): per block
  the relative weight change, and per boundary the linear CKA of the pooled states against the base.

    nice -n 5 .venv/bin/python bench/freeze_signals.py [--tasks sst2_100 ...]
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import protocol
import torch

from freezetune.core.layout import LayerMap
from freezetune.core.model import load_tokenizer
from freezetune.runs.loading import make_task
from freezetune.runs.run import load_data, load_model
from freezetune.scoring.probes import pooled_states, split_batch, standardise
from freezetune.scoring.sample import sample_batches
from freezetune.scoring.scorers import score
from freezetune.tasks.classification import SequenceClassification

OUT = Path(__file__).resolve().parent / "results" / "signals"
P = protocol.PROTOCOL
PROBE_STEPS = 16
PROBE_LR = 1e-4  # full fine-tuning's default rate


def ridge_cv_accuracy(x: torch.Tensor, y: torch.Tensor, folds: int = 4, alpha: float = 10.0) -> float:
    """Cross-validated accuracy of a one-vs-rest ridge classifier on z-scored states."""
    x = standardise(x)
    n, classes = len(y), int(y.max()) + 1
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    right = 0
    for k in range(folds):
        test = order[k::folds]
        train = torch.tensor(sorted(set(order.tolist()) - set(test.tolist())))
        a = torch.cat([x[train], torch.ones(len(train), 1, dtype=x.dtype)], 1)
        t = torch.nn.functional.one_hot(y[train], classes).double() * 2 - 1
        w = torch.linalg.solve(a.T @ a + alpha * torch.eye(a.shape[1], dtype=x.dtype), a.T @ t)
        b = torch.cat([x[test], torch.ones(len(test), 1, dtype=x.dtype)], 1)
        right += int(((b @ w).argmax(1) == y[test]).sum())
    return right / n


def linear_cka(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a - a.mean(0), b - b.mean(0)
    return float((a.T @ b).norm() ** 2 / ((a.T @ a).norm() * (b.T @ b).norm()))


def drift(model, layers: LayerMap, task, sample: list[dict], train_batches: list[dict]) -> dict:
    """Per-block weight change and per-boundary CKA against the base after a short full fine-tuning probe."""
    started = time.perf_counter()
    base_states, _, _ = pooled_states(model, layers, sample, None)
    tuned = copy.deepcopy(model)
    tuned.train()
    params = [p for p in tuned.parameters()]
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=PROBE_LR)
    tuned_layers = LayerMap.from_model(tuned)
    before = [[p.detach().clone() for p in block.parameters()] for block in tuned_layers.blocks]
    for step in range(PROBE_STEPS):
        inputs, targets, _ = split_batch(task, train_batches[step % len(train_batches)], torch.device("cpu"))
        loss = task.loss(tuned(**inputs), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    tuned.eval()
    change = []
    for block, old in zip(tuned_layers.blocks, before):
        new = list(block.parameters())
        delta = sum(float((n.detach() - o).norm() ** 2) for n, o in zip(new, old)) ** 0.5
        norm = sum(float(o.norm() ** 2) for o in old) ** 0.5
        change.append(delta / norm)
    tuned_states, _, _ = pooled_states(tuned, tuned_layers, sample, None)
    cka = [linear_cka(a, b) for a, b in zip(base_states, tuned_states)]
    return {"weight_change": change, "cka": cka, "steps": PROBE_STEPS, "seconds": time.perf_counter() - started}


def measure(key: str, seed: int) -> dict:
    base = protocol.base_spec(key)
    tokenizer = load_tokenizer(base.model.model, gguf_file=base.model.gguf_file)
    data = load_data(base, tokenizer)
    causal = protocol.task(key).get("task") == "causal-lm"
    task = make_task(base, data) if causal else SequenceClassification(data.label_names)
    spec = replace(base, train=replace(base.train, seed=seed))
    model = load_model(spec, task)
    layers = LayerMap.from_model(model)
    pad = tokenizer.pad_token_id or 0
    sample = sample_batches(data.train, seed=seed, pad_token_id=pad)
    out: dict = {"task": key, "seed": seed, "rows": len(data.train), "validation_rows": len(data.validation)}
    for scorer in ("gradient", "semantic") if causal else ("gradient", "semantic", "variability"):
        out[scorer] = score(model, sample, scorer, layers=layers, task=task).to_dict()
    if causal:  # a causal LM has no classes to probe; its signals are the gradient's and the logit lens's
        return out
    started = time.perf_counter()
    states, labels, _ = pooled_states(model, layers, sample, None)
    out["probe"] = {"accuracy": [ridge_cv_accuracy(x, labels) for x in states],
                    "seconds": time.perf_counter() - started}
    if seed == P["seeds"][0]:  # the dearest candidate (two minutes on 2 shared cores): its first seed only
        train_batches = sample_batches(data.train, size=PROBE_STEPS * 32, seed=seed + 1000, pad_token_id=pad)
        out["drift"] = drift(model, layers, task, sample, train_batches)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=P["order"])
    args = parser.parse_args()
    torch.manual_seed(0)
    for key in args.tasks:
        for seed in P["seeds"]:
            path = OUT / key / f"seed{seed}.json"
            if path.is_file():
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            started = time.perf_counter()
            result = measure(key, seed)
            path.write_text(json.dumps(result, indent=1) + "\n")
            print(f"{key} seed {seed}: {time.perf_counter() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
