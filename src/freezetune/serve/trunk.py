"""The shared trunk: one forward of the base's frozen blocks for every task of a batch.

For tasks on one base, the blocks below the shallowest block a task trained are the base's own.
A batch runs the base once, up to the deepest such boundary any requested task has, and keeps
the hidden states at each task's boundary (a forward pre-hook on the block that starts there;
after the last block for a task that trained only its head). Each task then runs only its own
blocks and head from its boundary (``training.prefix_cache.start_at``, the same path training
uses for a cached prefix, so the model's own forward still builds masks and positions). A task
that trained the embeddings (boundary 0) runs whole.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from freezetune.serve.loading import Base
from freezetune.training.boundaries import boundary_states, up_to_deepest
from freezetune.training.prefix_cache import start_at


@dataclass
class Batch:
    """Right-padded token rows and, per task, the rows it wants (indices into the rows)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    token_type_ids: torch.Tensor | None
    wants: dict[str, list[int]]

    @classmethod
    def collate(cls, rows: list[tuple[list[int], list[int] | None]], wants: dict[str, list[int]],
                pad_token_id: int) -> Batch:
        width = max(len(ids) for ids, _ in rows)
        ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        types = torch.zeros((len(rows), width), dtype=torch.long) if rows[0][1] is not None else None
        for i, (row, row_types) in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
            if types is not None and row_types is not None:
                types[i, : len(row)] = torch.tensor(row_types)
        return cls(ids, mask, types, wants)

    def inputs(self, rows: list[int] | None = None) -> dict[str, torch.Tensor]:
        out = {"input_ids": self.input_ids, "attention_mask": self.attention_mask}
        if self.token_type_ids is not None:
            out["token_type_ids"] = self.token_type_ids
        if rows is not None and rows != list(range(self.input_ids.size(0))):
            index = torch.tensor(rows, dtype=torch.long)
            out = {k: v[index] for k, v in out.items()}
        return out


def boundaries(base: Base, inputs: dict[str, torch.Tensor], depths: list[int]) -> dict[int, torch.Tensor]:
    """The base's hidden states at each boundary in ``depths`` (all > 0), in one forward that stops
    at the deepest."""
    with boundary_states(base.layers.blocks, depths) as captured:
        up_to_deepest(lambda: base.model.backbone(**inputs))
    return captured


@torch.no_grad()
def classify(base: Base, batch: Batch) -> dict[str, torch.Tensor]:
    """Each wanted task's class probabilities (float32, its rows in its order) for one batch."""
    tasks = {name: base.tasks[name] for name in batch.wants}
    shared_rows = sorted({r for name, rows in batch.wants.items() if tasks[name].depth > 0 for r in rows})
    depths = sorted({t.depth for t in tasks.values() if t.depth > 0})
    states = boundaries(base, batch.inputs(shared_rows), depths) if depths else {}
    position = {row: i for i, row in enumerate(shared_rows)}
    out: dict[str, torch.Tensor] = {}
    for name, rows in batch.wants.items():
        task = tasks[name]
        inputs = batch.inputs(rows)
        if task.depth == 0:
            logits = task.model(**inputs)
        else:
            hidden = states[task.depth]
            if rows != shared_rows:
                hidden = hidden[torch.tensor([position[r] for r in rows], dtype=torch.long)]
            with start_at(task.layers, task.depth, hidden):
                logits = task.model(**inputs)
        out[name] = torch.softmax(logits.float(), dim=-1)
    return out
