"""Optimizer state over a LISA run under transformers.Trainer: FreezetuneCallback against LMFlow's behaviour.

LMFlow's LISA (``DynamicLayerActivationCallback`` in OptimalScale/LMFlow's
``src/lmflow/pipeline/finetuner.py``, ported to axolotl as ``src/axolotl/utils/callbacks/lisa.py``)
switches ``requires_grad`` of the blocks every interval and leaves the optimizer alone: AdamW keeps
the moments of every block that was ever drawn. FreezetuneCallback drops the state of a tensor
when it freezes. Both arms here draw the same blocks (freezetune's seeded LISA draws), train the
embeddings and head throughout, and differ only in that; the state's bytes are read after every
optimizer step.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/lisa_optimizer_state.py      # writes bench/results/lisa_optimizer_state.md
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import datasets  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

from freezetune.core.layout import LayerMap  # noqa: E402
from freezetune.integrations.trainer_callback import FreezetuneCallback  # noqa: E402
from freezetune.integrations.trainer_optimizer import state_bytes  # noqa: E402
from freezetune.strategies.registry import resolve  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
BLOCKS, HIDDEN, VOCAB, GAMMA, INTERVAL, STEPS, ROWS, LENGTH = 16, 64, 2000, 2, 5, 40, 64, 16
SPEC = f"lisa:gamma={GAMMA}:interval={INTERVAL}"


def model():
    torch.manual_seed(0)
    config = transformers.LlamaConfig(hidden_size=HIDDEN, num_hidden_layers=BLOCKS, num_attention_heads=4,
                                      num_key_value_heads=2, intermediate_size=4 * HIDDEN, vocab_size=VOCAB,
                                      tie_word_embeddings=True, max_position_embeddings=LENGTH)
    return transformers.LlamaForCausalLM(config)


class StateKept(transformers.TrainerCallback):
    """LMFlow's way: requires_grad follows the draw, the optimizer's state is never touched."""

    def __init__(self, lm):
        self.layers = LayerMap.from_model(lm)
        self.schedule = resolve(SPEC, self.layers)
        self.lm = lm

    def on_step_begin(self, args, state, control, **kwargs):
        self.schedule.plan_at(state.global_step, 0, {}).apply(self.lm, self.layers)


class StateMeter(transformers.TrainerCallback):
    def __init__(self):
        self.bytes = []

    def on_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        self.bytes.append(state_bytes(optimizer))


def run(arm: str) -> list[int]:
    lm = model()
    ids = torch.randint(5, VOCAB, (ROWS, LENGTH), generator=torch.Generator().manual_seed(0))
    data = datasets.Dataset.from_dict({"input_ids": ids.tolist(), "attention_mask": [[1] * LENGTH] * ROWS,
                                       "labels": ids.tolist()})
    meter = StateMeter()
    first = FreezetuneCallback(SPEC) if arm == "freezetune" else StateKept(lm)
    with tempfile.TemporaryDirectory() as folder:
        args = transformers.TrainingArguments(output_dir=folder, per_device_train_batch_size=8, max_steps=STEPS,
                                              learning_rate=1e-3, report_to=[], save_strategy="no", use_cpu=True,
                                              disable_tqdm=True, logging_strategy="no", seed=0)
        transformers.Trainer(lm, args, train_dataset=data, data_collator=transformers.default_data_collator,
                             callbacks=[first, meter]).train()
    return meter.bytes


def main() -> None:
    ours, kept = run("freezetune"), run("state_kept")
    weights = sum(p.numel() * p.element_size() for p in model().parameters())
    rows = [("FreezetuneCallback (state dropped on freeze)", ours), ("LMFlow's behaviour (state kept)", kept)]
    lines = [
        "# Optimizer state over a LISA run under transformers.Trainer",
        "",
        f"`{SPEC}`, {STEPS} steps, AdamW (fp32 moments), a Llama built from config: {BLOCKS} blocks, hidden {HIDDEN}, "
        f"vocabulary {VOCAB}, tied embeddings; {weights / 2**20:.2f} MiB of weights.",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}; "
        f"{dt.date.today().isoformat()}. Command: `HF_HUB_OFFLINE=1 .venv/bin/python bench/lisa_optimizer_state.py`.",
        "",
        "| arm | state after step 1 (MiB) | peak (MiB) | at the end (MiB) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, series in rows:
        lines.append(f"| {name} | {series[0] / 2**20:.2f} | {max(series) / 2**20:.2f} | {series[-1] / 2**20:.2f} |")
    ratio_peak, ratio_end = max(ours) / max(kept), ours[-1] / kept[-1]
    lines += ["", f"Ratio freezetune / state kept: peak {ratio_peak:.3f}, at the end {ratio_end:.3f}."]
    text = "\n".join(lines) + "\n"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "lisa_optimizer_state.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
