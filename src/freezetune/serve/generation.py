"""Completions for causal-LM tasks: greedy decoding through tasks/generation.py, stop strings, streaming.

The prompts of one request decode together in the base's worker (``Worker.submit`` with a
``run``), exactly as ``freezetune predict`` decodes a file: same encoding, left padding, greedy
steps and end tokens, so the tokens agree with predict's. Stop strings cut the text where they
first appear (the string itself is not returned, as in OpenAI's API); decoding ends early once
every prompt has stopped. Streaming sends each step's new text as it comes, holding back what
could still turn out to be the start of a stop string, or half of a multi-byte character.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from freezetune.serve.loading import ServedTask
from freezetune.tasks.generation import generate_ids

BATCH_SIZE = 64  # prompts per decoding batch: freezetune predict's default, so batches match its


@dataclass
class Choice:
    index: int
    tokens: list[int] = field(default_factory=list)
    text: str = ""  # the text so far, cut at a stop string
    sent: int = 0  # characters already streamed
    finish_reason: str | None = None


class Decoding:
    """The state of one request's decoding, advanced step by step from the worker thread."""

    def __init__(self, task: ServedTask, prompts: list[list[int]], *, max_tokens: int, stop: list[str],
                 on_text: Callable[[int, str], None] | None = None):
        self.task = task
        self.prompts = prompts
        self.max_tokens = max_tokens
        self.stop_strings = [s for s in stop if s]
        self.stop_ids = set(task.prompt_format.stop_ids)
        self.on_text = on_text
        self.choices = [Choice(i) for i in range(len(prompts))]
        self.cancelled = threading.Event()  # the client went away

    def _decode(self, tokens: list[int]) -> str:
        return self.task.prompt_format.tokenizer.decode(tokens, skip_special_tokens=True)

    def step(self, rows: list[int], tokens: list[int]) -> None:
        for row, token in zip(rows, tokens):
            choice = self.choices[row]
            if choice.finish_reason is not None:
                continue
            if token in self.stop_ids:
                choice.finish_reason = "stop"
            else:
                choice.tokens.append(token)
                choice.text = self._decode(choice.tokens)
                cut = min((i for i in (choice.text.find(s) for s in self.stop_strings) if i >= 0), default=-1)
                if cut >= 0:
                    choice.text, choice.finish_reason = choice.text[:cut], "stop"
                elif len(choice.tokens) >= self.max_tokens:
                    choice.finish_reason = "length"
            self._send(choice)

    def _send(self, choice: Choice) -> None:
        if self.on_text is None:
            return
        safe = len(choice.text)
        if choice.finish_reason is None:
            if choice.text.endswith("\ufffd"):  # half of a multi-byte character: wait for the rest
                safe -= 1
            for s in self.stop_strings:  # a tail that may grow into a stop string waits too
                for k in range(min(len(s) - 1, len(choice.text)), 0, -1):
                    if choice.text.endswith(s[:k]):
                        safe = min(safe, len(choice.text) - k)
                        break
        if safe > choice.sent:
            self.on_text(choice.index, choice.text[choice.sent:safe])
            choice.sent = safe

    def done(self) -> bool:
        return self.cancelled.is_set() or all(c.finish_reason is not None for c in self.choices)

    def run(self) -> list[Choice]:
        """Decode every prompt (in the worker thread); return the choices, finished."""
        fmt = self.task.prompt_format
        new = generate_ids(self.task.model, fmt, self.prompts, max_new_tokens=self.max_tokens, batch_size=BATCH_SIZE,
                           on_step=self.step, stop=self.done)
        for choice, tokens in zip(self.choices, new):
            if choice.finish_reason is None:  # the steps said nothing else: trust what generate returned
                choice.tokens = tokens
                choice.text = self._decode(tokens)
                choice.finish_reason = "length" if len(tokens) >= self.max_tokens else "stop"
                self._send(choice)
        return self.choices
