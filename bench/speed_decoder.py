"""Decoder speed: SmolLM2-135M on prompt/response data, freezetune against Trainer and PEFT.

Data: 128 rows of the protocol's ``smollm2_sst2_500`` training split (SST-2 as text, through
the chat template), max length 128, batch 16, 2 epochs (16 optimizer steps; the step time is
the median after 5 warm-up steps). Every arm runs in its own process and prints one JSON line:

* ``ft_topk``     freezetune ``top_k:8`` (the top 8 of 30 blocks + final norm), prefix cache on;
* ``trainer_topk`` ``transformers.Trainer`` on the plain ``LlamaForCausalLM`` with the same
  blocks frozen by ``requires_grad=False`` (what users do by hand); the model computes its own
  loss from ``labels`` (prompt tokens -100), so it projects every position onto the vocabulary;
* ``floor_topk``  a bare PyTorch loop over the same 8 blocks + norm + ``lm_head`` on boundary
  states computed beforehand: the least a step of that plan can cost here;
* ``ft_lora_top`` freezetune ``lora:r=8:blocks=22-29`` (LoRA on the top 8 blocks), cache on;
* ``peft_lora``   PEFT LoRA r=8 on every block's q_proj/v_proj (same rank, alpha 16, dropout
  0.1) under the same Trainer.

freezetune projects onto the vocabulary only at target (response) positions: the task hands the
model a mask of them (core/causal_lm.py). The floor does the same; Trainer and PEFT compute the
logits of every position, as ``...ForCausalLM`` with ``labels`` does. The ceiling of the cache
alone is Trainer's step over the floor's.

    .venv/bin/python bench/speed_decoder.py            # about 15 minutes on 2 cores
    .venv/bin/python bench/speed_decoder.py --report-only
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import speed  # noqa: E402 - shared machine description and memory helpers

ARMS = ["ft_topk", "trainer_topk", "floor_topk", "ft_lora_top", "peft_lora"]
SIZES = {"rows": 128, "max_length": 128, "batch_size": 16, "epochs": 2}
QUICK = {"rows": 48, "max_length": 64, "batch_size": 8, "epochs": 2}  # a smoke test of the script
DEPTH = 22  # top_k:8 of 30 blocks
LR = 3e-4  # one rate for every arm: speed, not quality, is compared
WARMUP = 5
OUT = HERE / "results" / "speed_decoder"


def load(sizes: dict):
    sys.path.insert(0, str(HERE))
    import protocol

    from freezetune.core.causal_lm import load_causal_lm
    from freezetune.core.model import load_tokenizer
    from freezetune.io import defaults
    from freezetune.io.lm_data import load_lm_data

    folder, gguf = defaults.smollm2_gguf()
    tokenizer = load_tokenizer(folder, gguf_file=gguf)
    split = protocol.prepare("smollm2_sst2_500")
    data = load_lm_data(split / "train.tsv", tokenizer=tokenizer, prompt_column="prompt", response_column="response",
                        eval_path=split / "val.tsv", max_length=sizes["max_length"], max_train_rows=sizes["rows"])
    return tokenizer, data.train, load_causal_lm(folder, gguf_file=gguf)


def _steady(times: list[float]) -> float:
    return statistics.median(times[WARMUP:] or times)


def arm_freezetune(plan: str, sizes: dict) -> dict:
    from freezetune.tasks.causal_lm import CausalLanguageModeling
    from freezetune.training.callbacks import Callback
    from freezetune.training.finetuner import Finetuner

    tokenizer, train, model = load(sizes)
    losses = []

    class Losses(Callback):
        def on_step_end(self, tuner, record):
            losses.append(record["loss"])

    tuner = Finetuner(model, plan, task=CausalLanguageModeling.for_data(True), lr=LR, epochs=sizes["epochs"],
                      batch_size=sizes["batch_size"], progress=False, pad_token_id=tokenizer.pad_token_id,
                      callbacks=[Losses()])
    started = time.perf_counter()
    fit = tuner.fit(train)
    c = fit.costs
    return {"steady_step_s": c["steady_step_s"], "e2e_s": time.perf_counter() - started, "cache": c["cache"],
            "cache_build_s": c["cache_build_s"], "trainable_params": c["trainable_params"],
            "peak_rss_bytes": speed.max_rss_bytes(), "losses": losses}


def arm_trainer(use_peft: bool, sizes: dict) -> dict:
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from freezetune.core.layout import LayerMap
    from freezetune.io.loader import collate
    from freezetune.strategies.registry import resolve

    tokenizer, train, model = load(sizes)
    lm = model.backbone
    if use_peft:
        from peft import LoraConfig, get_peft_model

        lm = get_peft_model(lm, LoraConfig(task_type="CAUSAL_LM", r=8, lora_alpha=16, lora_dropout=0.1,
                                           target_modules=["q_proj", "v_proj"]))
    else:
        layers = LayerMap.from_model(model)
        resolve("top_k:8", layers).apply(model, layers)  # requires_grad only
    ends: list[float] = []
    losses: list[float] = []

    class Timing(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            ends.append(time.perf_counter())

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                losses.append(logs["loss"])

    args = TrainingArguments(
        output_dir=tempfile.mkdtemp(prefix="speed-decoder-"), per_device_train_batch_size=sizes["batch_size"],
        num_train_epochs=sizes["epochs"], learning_rate=LR, weight_decay=0.01, lr_scheduler_type="linear",
        warmup_steps=int(0.06 * sizes["epochs"] * -(-len(train) // sizes["batch_size"])), max_grad_norm=1.0, optim="adamw_torch", eval_strategy="no", save_strategy="no",
        logging_steps=1, report_to=[], dataloader_num_workers=0, use_cpu=True, seed=0, disable_tqdm=True,
    )
    pad = tokenizer.pad_token_id
    trainer = Trainer(model=lm, args=args, train_dataset=train,
                      data_collator=lambda rows: collate(rows, pad_token_id=pad), callbacks=[Timing()])
    started = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - started
    periods = [b - a for a, b in zip(ends, ends[1:])]  # step end to step end, as freezetune times it
    return {"steady_step_s": _steady(periods), "e2e_s": wall,
            "trainable_params": sum(p.numel() for p in lm.parameters() if p.requires_grad),
            "peak_rss_bytes": speed.max_rss_bytes(), "losses": losses}


def arm_floor(sizes: dict) -> dict:
    """Blocks 22-29, the final norm and lm_head at target positions, on precomputed boundary states."""
    import torch

    from freezetune.io.loader import make_loader
    from freezetune.tasks.causal_lm import IGNORE

    tokenizer, train, model = load(sizes)
    lm = model.backbone.eval()
    base, head = lm.model, lm.lm_head
    suffix = list(base.layers[DEPTH:])
    params = [p for block in suffix for p in block.parameters()] + list(base.norm.parameters())
    for p in lm.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    batches = list(make_loader(train, batch_size=sizes["batch_size"], shuffle=True, seed=0,
                               pad_token_id=tokenizer.pad_token_id))
    with torch.no_grad():  # the boundary states, once: what the cache holds
        states = [lm(input_ids=b["input_ids"], attention_mask=b["attention_mask"], output_hidden_states=True)
                  .hidden_states[DEPTH] for b in batches]
    optimizer = torch.optim.AdamW(params, lr=LR, weight_decay=0.01)
    times, losses = [], []
    for _ in range(sizes["epochs"]):
        for batch, hidden in zip(batches, states):
            started = time.perf_counter()
            mask = batch["attention_mask"]
            length = mask.size(1)
            causal = torch.tril(torch.ones(length, length, dtype=torch.bool))
            allowed = causal[None, None] & mask[:, None, None, :].bool()
            bias = torch.zeros(allowed.shape).masked_fill(~allowed, torch.finfo(torch.float32).min)
            positions = torch.arange(length)[None].expand(mask.size(0), -1)
            rotary = base.rotary_emb(hidden, positions)
            h = hidden
            for block in suffix:
                out = block(h, attention_mask=bias, position_ids=positions, position_embeddings=rotary)
                h = out[0] if isinstance(out, tuple) else out
            h = base.norm(h)
            at = batch["labels"][:, 1:] != IGNORE
            loss = torch.nn.functional.cross_entropy(head(h[:, :-1][at]), batch["labels"][:, 1:][at])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            times.append(time.perf_counter() - started)
            losses.append(loss.item())
    return {"steady_step_s": _steady(times), "trainable_params": sum(p.numel() for p in params),
            "peak_rss_bytes": speed.max_rss_bytes(), "losses": losses}


def child(arm: str, sizes: dict) -> dict:
    if arm == "ft_topk":
        return arm_freezetune("top_k:8", sizes)
    if arm == "ft_lora_top":
        return arm_freezetune(f"lora:r=8:blocks={DEPTH}-29", sizes)
    if arm == "floor_topk":
        return arm_floor(sizes)
    return arm_trainer(arm == "peft_lora", sizes)


def report(results: dict, sizes: dict) -> str:
    r = {arm: results[arm] for arm in ARMS if arm in results}
    step = {arm: v["steady_step_s"] for arm, v in r.items()}
    m = results["machine"]
    lines = [
        "# Decoder speed: SmolLM2-135M, freezetune against Trainer and PEFT",
        "",
        f"Machine: {m['cpu']}, {m['cores_usable']} cores, torch {m['torch']}, transformers {m['transformers']}, "
        f"peft {m['peft']}; fp32, no GPU. Command: `.venv/bin/python bench/speed_decoder.py`. Sizes: "
        f"{sizes['rows']} rows of SST-2 as text (chat template), max length {sizes['max_length']}, batch "
        f"{sizes['batch_size']}, {sizes['epochs']} epochs; step = median after {WARMUP} warm-up steps; each arm "
        "in its own process. freezetune and the floor project onto the vocabulary at response positions only; "
        "Trainer and PEFT at every position (what `...ForCausalLM` does with `labels`).",
        "",
        "| arm | steady step | end to end | trainable | peak RSS | last loss |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for arm, v in r.items():
        e2e = f"{v['e2e_s']:.0f} s" if "e2e_s" in v else "-"
        lines.append(f"| {arm} | {v['steady_step_s']:.2f} s | {e2e} | {v['trainable_params'] / 1e6:.2f} M | "
                     f"{v['peak_rss_bytes'] / 2**30:.2f} GiB | {v['losses'][-1]:.3f} |")
    if {"ft_topk", "trainer_topk", "floor_topk"} <= step.keys():
        speedup = step["trainer_topk"] / step["ft_topk"]
        ceiling = step["trainer_topk"] / step["floor_topk"]
        lines += ["", f"- top_k:8: **{speedup:.2f}x** faster than Trainer per steady step (target ≥ 1.5x); the "
                      f"ceiling (Trainer / floor) is {ceiling:.2f}x, so freezetune reaches {speedup / ceiling:.2f} "
                      "of it (target ≥ 0.9)."]
    if "ft_topk_repeats_s" in results:  # the same arm run again: how far one process's median moves
        runs = ", ".join(f"{x:.2f} s" for x in results["ft_topk_repeats_s"])
        lines.append(f"- ft_topk measured in separate runs: {runs} per step; the spread between runs is the "
                     "noise on the ratios above.")
    if {"ft_lora_top", "peft_lora"} <= step.keys():
        lines.append(f"- LoRA on the top 8 blocks, cached: **{step['peft_lora'] / step['ft_lora_top']:.2f}x** faster "
                     "than PEFT LoRA on all blocks per steady step (target ≥ 1.5x); its quality against LoRA on all "
                     "blocks is in bench/results/causal_lm.md.")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arm", choices=ARMS, help=argparse.SUPPRESS)  # a child process
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, results to /tmp (checks the script)")
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=ARMS,
                        help="run only these arms; the others keep their saved results")
    args = parser.parse_args()
    sizes = QUICK if args.quick else SIZES
    out = Path(tempfile.gettempdir()) / "speed_decoder_quick" if args.quick else OUT
    if args.arm:
        print(speed.MARK + json.dumps(child(args.arm, sizes)), flush=True)
        return 0
    if not (HERE.parent.parent / "shared" / "data").is_dir():
        print("skipped: ../shared/data is absent", file=sys.stderr)
        return 0
    saved = out.with_suffix(".json")
    results = json.loads(saved.read_text()) if saved.is_file() and (args.report_only or args.arms != ARMS) else {}
    results["machine"] = results.get("machine") or speed.machine()
    for arm in [] if args.report_only else args.arms:
        print(f"arm {arm} ...", flush=True)
        proc = subprocess.run([sys.executable, __file__, "--arm", arm, *(["--quick"] if args.quick else [])],
                              capture_output=True, text=True)
        lines = [x for x in proc.stdout.splitlines() if x.startswith(speed.MARK)]
        if proc.returncode or not lines:
            print(proc.stderr[-3000:], file=sys.stderr)
            return 1
        results[arm] = json.loads(lines[-1][len(speed.MARK):])
        print(f"  steady step {results[arm]['steady_step_s']:.2f} s", flush=True)
        out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    text = report(results, sizes)
    out.with_suffix(".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
