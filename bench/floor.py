"""The floor: what one training step costs when nothing is wasted (plain PyTorch, no freezetune loop).

The frozen prefix (embeddings + blocks 0..d-1) runs ONCE per fixed batch, in eval mode under
``no_grad``; the timed loop then runs only the trainable suffix (blocks d..L-1, in train mode, as
freezetune runs them) + mean pooling + dropout + classifier, cross-entropy, backward, gradient
clipping, the linear warm-up/decay learning rate and an AdamW step, on those precomputed states.
No data loading, no collation, no cache look-up, no embeddings, no mask building: the remaining
cost is the suffix's own compute, which no trainer of that plan can avoid.

BERT blocks are called as ``block(hidden, extended_mask)`` where ``extended_mask`` is the additive
``[batch, 1, 1, keys]`` mask ``(1 - mask) * finfo(dtype).min``. In transformers 5.23 ``BertLayer``
passes its ``attention_mask`` straight to the attention function: with the default ``sdpa``
implementation that is ``torch.nn.functional.scaled_dot_product_attention(attn_mask=...)``, which
takes a boolean or an additive float mask (the model itself builds a boolean ``[B, 1, Q, K]`` one
with ``create_bidirectional_mask``); ``eager`` adds it to the scores. The additive form is right for
both; :func:`check_equivalence` compares the floor's logits with the model's own forward to prove it.

Only the model (built by the caller, identical to the other arms) and the data come from outside;
which blocks train is decided here from the plan name, independently of freezetune's strategies.
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn


def suffix_layout(plan: str, num_blocks: int) -> tuple[int, list[int], bool, bool]:
    """(d, trainable blocks, embeddings train, lora) for the benchmark's plans."""
    n = num_blocks
    if plan == "full":
        return 0, list(range(n)), True, False
    if plan == "lower_half":
        blocks = [i for i in range(n) if i >= n / 2]
        return blocks[0], blocks, False, False
    if plan == "alternate":
        blocks = list(range(1, n, 2))
        return blocks[0], blocks, False, False
    if plan.startswith("top_k:"):
        k = int(plan.split(":", 1)[1])
        return n - k, list(range(n - k, n)), False, False
    if plan == "head_only":
        return n, [], False, False
    if plan.startswith("lora"):
        return 0, [], False, True
    raise ValueError(f"no floor for plan {plan!r}")


def extended_mask(mask: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return (1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


def fixed_batches(dataset, batch_size: int, seed: int, pad_token_id: int, collate) -> list[dict]:
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed)).tolist()
    return [
        collate([dataset[i] for i in order[s : s + batch_size]], pad_token_id=pad_token_id)
        for s in range(0, len(order), batch_size)
    ]


def run_floor(
    model: nn.Module,
    plan: str,
    batches: list[dict],
    *,
    steps: int,
    lr: float,
    warmup_ratio: float = 0.06,
    weight_decay: float = 0.01,
    max_grad_norm: float = 1.0,
    lora: dict | None = None,
    warmup_steps_dropped: int = 5,
) -> dict:
    """Time ``steps`` optimizer steps of the trainable suffix; return medians and per-part medians.

    ``model`` is a SequenceClassifier-shaped module: ``.backbone`` (a BertModel: ``.embeddings``,
    ``.encoder.layer``), ``.dropout``, ``.classifier``; it is modified in place.
    """
    backbone = model.backbone
    blocks = backbone.encoder.layer
    d, trainable, train_embeddings, use_lora = suffix_layout(plan, len(blocks))
    if use_lora:
        from peft import LoraConfig, inject_adapter_in_model

        cfg = LoraConfig(
            r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
            target_modules=list(lora["targets"]), bias="none",
        )
        inject_adapter_in_model(cfg, backbone)
    for p in model.parameters():
        p.requires_grad_(False)
    for i in trainable:
        for p in blocks[i].parameters():
            p.requires_grad_(True)
    if train_embeddings:
        for p in backbone.embeddings.parameters():
            p.requires_grad_(True)
    if use_lora:
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.requires_grad_(True)
    for p in model.classifier.parameters():
        p.requires_grad_(True)

    # ---- precompute the boundary states of the frozen prefix (eval mode, no grad) ----------
    model.eval()
    started = time.perf_counter()
    prepared = []
    with torch.no_grad():
        for batch in batches:
            mask = batch["attention_mask"]
            ext = extended_mask(mask)
            item = {"mask": mask, "ext": ext, "labels": batch["labels"]}
            if train_embeddings:
                item["input_ids"] = batch["input_ids"]
                item["token_type_ids"] = batch.get("token_type_ids")
            else:
                hidden = backbone.embeddings(input_ids=batch["input_ids"], token_type_ids=batch.get("token_type_ids"))
                for block in list(blocks)[:d]:
                    hidden = block(hidden, ext)
                item["hidden"] = hidden.contiguous()
            prepared.append(item)
    precompute_s = time.perf_counter() - started
    precompute_bytes = sum(x["hidden"].numel() * 4 for x in prepared if "hidden" in x)

    # ---- modes as a trainer of this plan would set them -------------------------------------
    model.train()
    if not train_embeddings:
        backbone.embeddings.eval()
        for block in list(blocks)[:d]:
            block.eval()
    suffix = list(blocks)[d:]

    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim >= 2 and "LayerNorm" not in n]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and not (p.ndim >= 2 and "LayerNorm" not in n)]
    groups = [g for g in ({"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}) if g["params"]]
    optimizer = torch.optim.AdamW(groups, lr=lr)
    warmup = int(warmup_ratio * steps)

    parts = {k: [] for k in ("forward", "backward", "optimizer", "cpu_forward", "cpu_backward", "cpu_optimizer")}
    step_times, cpu_times, losses = [], [], []
    clock = time.thread_time  # main-thread CPU time: the work itself, whatever else runs on the machine
    for step in range(steps):
        item = prepared[step % len(prepared)]
        c0 = clock()
        t0 = time.perf_counter()
        if train_embeddings:
            hidden = backbone.embeddings(input_ids=item["input_ids"], token_type_ids=item["token_type_ids"])
        else:
            hidden = item["hidden"]
        for block in suffix:
            hidden = block(hidden, item["ext"])
        logits = model.classifier(model.dropout(mean_pool(hidden, item["mask"])))
        loss = nn.functional.cross_entropy(logits, item["labels"])
        t1, c1 = time.perf_counter(), clock()
        loss.backward()
        t2, c2 = time.perf_counter(), clock()
        if max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        factor = (step + 1) / warmup if step < warmup else max(0.0, (steps - step) / max(1, steps - warmup))
        for g in optimizer.param_groups:
            g["lr"] = lr * factor
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        t3, c3 = time.perf_counter(), clock()
        cpu_times.append(c3 - c0)
        step_times.append(t3 - t0)
        parts["forward"].append(t1 - t0)
        parts["backward"].append(t2 - t1)
        parts["optimizer"].append(t3 - t2)
        parts["cpu_forward"].append(c1 - c0)
        parts["cpu_backward"].append(c2 - c1)
        parts["cpu_optimizer"].append(c3 - c2)
        losses.append(loss.item())
    steady = slice(warmup_steps_dropped, None) if steps > warmup_steps_dropped else slice(None)
    return {
        "depth": d,
        "trainable_blocks": trainable,
        "steady_step_s": statistics.median(step_times[steady]),
        "step_times_s": step_times,
        "parts_median_s": {k: statistics.median(v[steady]) for k, v in parts.items()},
        "cpu_step_median_s": statistics.median(cpu_times[steady]),
        "period_p10_s": sorted(step_times[steady])[len(step_times[steady]) // 10],
        "precompute_s": precompute_s,
        "precompute_bytes": precompute_bytes,
        "trainable_params": sum(p.numel() for p in params),
        "losses": losses,
    }


@torch.no_grad()
def check_equivalence(model: nn.Module, plan: str, batch: dict) -> float:
    """Max |logits(floor path) - logits(model forward)| in eval mode on one batch (before training)."""
    backbone = model.backbone
    blocks = list(backbone.encoder.layer)
    was = model.training
    model.eval()
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}
    reference = model(**inputs)
    ext = extended_mask(batch["attention_mask"])
    hidden = backbone.embeddings(input_ids=batch["input_ids"], token_type_ids=batch.get("token_type_ids"))
    for block in blocks:
        hidden = block(hidden, ext)
    ours = model.classifier(mean_pool(hidden, batch["attention_mask"]))
    model.train(was)
    return float((ours - reference).abs().max())
