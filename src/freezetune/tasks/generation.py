"""Greedy generation for causal-LM tasks: prompts in, the new tokens of each continuation out.

Prompts are encoded exactly as in training (``PromptFormat``: the chat template when the run
used one), keep their last ``max_length`` tokens, and are padded on the left, so every row's
continuation starts right after its own last prompt token. Decoding is greedy and stops at the
end-of-sequence token (or the template's end of turn) or after ``max_new_tokens``.

``freezetune predict`` (runs/generate.py) and the server (serve/) both decode through here, so a
served completion is token for token what predict writes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from freezetune.core.causal_lm import CausalLM
from freezetune.core.device import pick_device
from freezetune.io.lm_data import PromptFormat

# Called once per decoding step with the global row indices of the chunk and the step's token per row.
StepCallback = Callable[[list[int], list[int]], None]


def left_padded(rows: list[list[int]], pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.tensor([[pad_token_id] * (width - len(r)) + r for r in rows], dtype=torch.long)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], dtype=torch.long)
    return ids, mask


def pad_id(fmt: PromptFormat) -> int:
    pad = fmt.tokenizer.pad_token_id
    stops = fmt.stop_ids
    return pad if pad is not None else (stops[0] if stops else 0)  # never attended: any id does


def generate(model: CausalLM, fmt: PromptFormat, prompts: list[str], *, max_new_tokens: int = 32,
             max_length: int = 128, batch_size: int = 16, progress: bool = False) -> list[list[int]]:
    """The new tokens of each prompt's greedy continuation (without padding or the end token)."""
    encoded = [ids[-max_length:] for ids in fmt.prompts(prompts)]
    return generate_ids(model, fmt, encoded, max_new_tokens=max_new_tokens, batch_size=batch_size, progress=progress)


def generate_ids(model: CausalLM, fmt: PromptFormat, encoded: list[list[int]], *, max_new_tokens: int,
                 batch_size: int = 16, progress: bool = False, on_step: StepCallback | None = None,
                 stop: Callable[[], bool] | None = None) -> list[list[int]]:
    """``generate`` on prompts already encoded. ``on_step`` hears every step's tokens (streaming);
    ``stop`` returning True ends the decoding after the current step (every row done, a client gone)."""
    from tqdm.auto import tqdm

    stops = fmt.stop_ids  # EOS, and the chat template's end of turn when it differs
    pad = pad_id(fmt)
    device = pick_device()
    model.to(device).eval()
    out: list[list[int]] = []
    for start in tqdm(range(0, len(encoded), batch_size), desc="generate", disable=not progress, leave=False):
        ids, mask = left_padded(encoded[start:start + batch_size], pad)
        extra = {}
        if on_step is not None or stop is not None:
            extra = _watchers(list(range(start, start + ids.size(0))), on_step, stop)
        new = model.generate(ids.to(device), mask.to(device), max_new_tokens=max_new_tokens,
                             eos_token_id=stops or None, pad_token_id=pad, **extra)
        for row in new.tolist():
            ends = [row.index(t) for t in stops if t in row]
            out.append(row[: min(ends)] if ends else row)
    return out


def _watchers(rows: list[int], on_step: StepCallback | None, stop: Callable[[], bool] | None) -> dict:
    """A transformers streamer (each step's tokens) and a stopping criterion (``stop``)."""
    from transformers import StoppingCriteria, StoppingCriteriaList
    from transformers.generation.streamers import BaseStreamer

    class Steps(BaseStreamer):
        def __init__(self) -> None:
            self.prompt_seen = False

        def put(self, value: torch.Tensor) -> None:
            if not self.prompt_seen:  # generate's first call hands over the prompt itself
                self.prompt_seen = True
                return
            if on_step is not None:
                on_step(rows, value.reshape(-1).tolist())

        def end(self) -> None:
            pass

    class Stop(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            done = bool(stop is not None and stop())
            return torch.full((input_ids.size(0),), done, dtype=torch.bool, device=input_ids.device)

    return {"streamer": Steps(), "stopping_criteria": StoppingCriteriaList([Stop()])}
