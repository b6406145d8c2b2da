"""What a plan is predicted to cost, as a share of full fine-tuning's waited time, before it trains.

A training step of a transformer costs, per block, about one forward, one backward through the
activations (every block between the lowest trainable one and the loss) and one backward into the
weights (trainable blocks only); the frozen prefix below the lowest trainable block is cached and
costs nothing per step. So a plan's work in block-passes is

    forward (blocks above the cache) + activation backward (blocks above the lowest trainable) +
    weight backward (trainable blocks),

3·L for every block, and its share of full fine-tuning's waited time (training + cache build) is
``FIXED_SHARE + PER_PASS_SHARE · work / (3·L)``: a fixed part (evaluation, the head, the cache build,
the data loader) and a part proportional to the work. LoRA runs every block forward and backward
through the activations and adds its adapters' small weight backward: 2.5·L.

The two constants were fitted by least squares on the stored runs of bench/protocol.yaml (MiniLM, 6
blocks, 54 plan-task means: depth:0..6, alternate, LoRA on six tasks): 0.053 and 0.785, root mean
square error 0.11 of full's time (SST-2 at 100 rows, where full takes 71 s, is the noisiest). Full
fine-tuning is 1 by definition (it also trains the embeddings, which no other plan does).
"""

from __future__ import annotations

FIXED_SHARE = 0.053
PER_PASS_SHARE = 0.785
LORA_PASSES_PER_BLOCK = 2.5


def predicted_share(num_blocks: int, depth: int | None = None, *, blocks: tuple[int, ...] | None = None,
                    lora: bool = False) -> float:
    """Predicted waited time of a plan over full fine-tuning's: ``depth`` (blocks 0..depth-1 frozen), or
    the trainable ``blocks`` (any set; the cache stops at the lowest), or LoRA on every block."""
    n = num_blocks
    if lora:
        work = LORA_PASSES_PER_BLOCK * n
    else:
        trained = tuple(range(depth, n)) if blocks is None else tuple(sorted(blocks))
        lowest = trained[0] if trained else n
        work = 2 * (n - lowest) + len(trained)
    return FIXED_SHARE + PER_PASS_SHARE * work / (3 * n)
