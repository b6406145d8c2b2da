"""Text for causal language modelling in, tokenized examples with per-token targets out.

Two shapes of data:

* **plain text**: a ``text`` column (CSV, TSV, JSONL, Parquet), or a ``.txt`` file whose
  paragraphs (blank-line separated) are the examples. Every token is a target.
* **prompt / response**: two columns. Only the response is a target: the prompt's labels are
  -100, so the loss never teaches the model to write prompts. With ``chat_template="auto"``
  and a tokenizer that has a chat template, the pair is rendered as a user turn and an
  assistant turn; the response's targets end with the template's end-of-turn token, so the
  model learns to stop. Without a template, prompt and response are joined as written (put
  any separator in the prompt) and the response ends with the end-of-sequence token.

Examples longer than ``max_length`` lose the start of their prompt, never their response; they
are counted. Examples with no target token left (an empty response, or a response that alone
fills ``max_length``) are dropped and counted. ``pack=True`` concatenates the examples (each
ending with its end token) and cuts the stream into ``max_length`` pieces: no padding, no
truncation, at the cost of attention across example borders.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pandas as pd

from freezetune.core.errors import FreezetuneError
from freezetune.core.eval_sets import EvalSetSpec
from freezetune.io.data import EvalSet, check_split_options, read_columns, validation_size
from freezetune.io.loader import IGNORE

logger = logging.getLogger("freezetune")

CHAT_TEMPLATES = ("auto", "none")


@dataclass
class LanguageModelingData:
    """Tokenized, unpadded splits: input_ids, attention_mask and labels (-100 = not a target)."""

    train: datasets.Dataset
    validation: datasets.Dataset
    test: datasets.Dataset | None
    validation_source: str
    truncated: dict[str, int]  # per split: examples that lost the start of their prompt (or text)
    dropped: dict[str, int]  # per split: rows with a missing value or no target token left
    columns: tuple[str, ...]  # (text,) or (prompt, response)
    chat_template: bool  # whether the tokenizer's chat template rendered the pairs
    label_names: None = None  # no classes: what a classification run would list
    eval_sets: dict[str, EvalSet] = field(default_factory=dict)  # --extra-eval / --ood-set, by name


@dataclass
class PromptFormat:
    """How a prompt (and its response) becomes tokens; ``predict`` encodes prompts the same way."""

    tokenizer: Any
    chat_template: bool

    @classmethod
    def choose(cls, tokenizer, chat_template: str) -> PromptFormat:
        if chat_template not in CHAT_TEMPLATES:
            raise FreezetuneError(f"--chat-template must be auto or none, got {chat_template!r}")
        return cls(tokenizer, chat_template == "auto" and bool(getattr(tokenizer, "chat_template", None)))

    @functools.cached_property
    def stop_ids(self) -> list[int]:
        """Tokens that end a response: EOS and, with a chat template, the token that ends its turn.

        A base model's template may end a turn with a token other than EOS (Qwen2.5 base: EOS
        ``<|endoftext|>``, turn end ``<|im_end|>``): it is the first special token the template
        writes after an answer.
        """
        eos = self.tokenizer.eos_token_id
        stops = [eos] if eos is not None else []
        if self.chat_template:
            prompt = self.prompts(["?"])[0]
            answered = self._render([{"role": "user", "content": "?"}, {"role": "assistant", "content": "yes"}], False)
            after = self.tokenizer(answered, add_special_tokens=False)["input_ids"][len(prompt):]
            special = {i for i, t in self.tokenizer.added_tokens_decoder.items() if t.special}
            special = (special | set(self.tokenizer.all_special_ids)) - {self.tokenizer.unk_token_id}  # "yes" unknown
            turn_end = next((t for t in after if t in special), None)
            if turn_end is not None and turn_end not in stops:
                stops.append(turn_end)
        return stops

    def prompts(self, prompts: list[str]) -> list[list[int]]:
        if not self.chat_template:
            return self.tokenizer(prompts, add_special_tokens=True)["input_ids"]
        rendered = [self._render([{"role": "user", "content": p}], True) for p in prompts]
        return self.tokenizer(rendered, add_special_tokens=False)["input_ids"]

    def pairs(self, prompts: list[str], responses: list[str]) -> list[tuple[list[int], list[int]]]:
        prompt_ids = self.prompts(prompts)
        if not self.chat_template:
            responses_ids = self.tokenizer(responses, add_special_tokens=False)["input_ids"]
            return [(p, ended(r, self.stop_ids)) for p, r in zip(prompt_ids, responses_ids)]
        rendered = [self._render([{"role": "user", "content": p}, {"role": "assistant", "content": r}], False)
                    for p, r in zip(prompts, responses)]
        out = []
        for p, full in zip(prompt_ids, self.tokenizer(rendered, add_special_tokens=False)["input_ids"]):
            if full[: len(p)] != p:  # a template that renders the user turn differently once answered
                raise FreezetuneError("the tokenizer's chat template does not extend the prompt with the response: "
                                      "use --chat-template none")
            response = full[len(p):]
            cut = [response.index(t) for t in self.stop_ids if t in response]
            if cut:  # the end-of-turn token ends it; what follows is the template's layout
                response = response[: min(cut) + 1]
            out.append((p, response))
        return out

    def _render(self, messages: list[dict[str, str]], generation_prompt: bool) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def ended(ids: list[int], stops: list[int]) -> list[int]:
    """``ids`` ending with a stop token (the first of ``stops``, EOS, unless one already ends it)."""
    return ids if not stops or (ids and ids[-1] in stops) else [*ids, stops[0]]


def read_texts(path: str | Path, columns: tuple[str, ...], *, encoding: str, header: bool) -> tuple[pd.DataFrame, int]:
    """The file's rows for ``columns`` (a ``.txt`` file: its paragraphs), without rows missing a value."""
    if Path(path).suffix.lower() == ".txt" and columns != ("text",):
        raise FreezetuneError(f"{path} is plain text: it has no {' / '.join(columns)} columns; use a table "
                              "(CSV, JSONL) for prompt/response data")
    frame, dropped = read_columns(path, columns, encoding=encoding, header=header,
                                  flags="--text-column, or --prompt-column and --response-column")
    return frame.astype(str).reset_index(drop=True), dropped


def encode(frame: pd.DataFrame, columns: tuple[str, ...], fmt: PromptFormat, max_length: int, pack: bool,
           split: str) -> tuple[datasets.Dataset, int, int]:
    """(examples, truncated, dropped for lack of targets) for one split."""
    if len(columns) == 2:
        pairs = fmt.pairs(frame[columns[0]].tolist(), frame[columns[1]].tolist())
    else:
        ids = fmt.tokenizer(frame[columns[0]].tolist(), add_special_tokens=True)["input_ids"]
        pairs = [([], ended(x, fmt.stop_ids)) for x in ids]
    examples: list[tuple[list[int], list[int]]] = []
    truncated = no_target = 0
    for prompt, target in pairs:
        if not target:
            no_target += 1
            continue
        if pack:
            examples.append((prompt + target, [IGNORE] * len(prompt) + target))
            continue
        if not prompt:  # plain text: keep its start; every kept token is a target
            truncated += len(target) > max_length
            examples.append((target[:max_length], target[:max_length]))
            continue
        room = max_length - len(target)
        if room < 1:  # the response alone fills the window: nothing to condition on, never cut it
            no_target += 1
            continue
        if len(prompt) > room:
            truncated += 1
            prompt = prompt[len(prompt) - room:]
        examples.append((prompt + target, [IGNORE] * len(prompt) + target))
    if pack:
        examples = _pack(examples, max_length)
    if truncated:
        cut = "the start of their prompt" if len(columns) == 2 else "their end"
        logger.info("%d of %d %s examples were longer than max_length=%d and lost %s",
                    truncated, len(frame), split, max_length, cut)
    if no_target:
        logger.warning("%d of %d %s examples had no response tokens left within max_length=%d and were dropped",
                       no_target, len(frame), split, max_length)
    if not examples:
        raise FreezetuneError(f"no {split} example has a token to learn within --max-length {max_length}: "
                              "raise --max-length or shorten the prompts")
    rows = {"input_ids": [x for x, _ in examples], "attention_mask": [[1] * len(x) for x, _ in examples],
            "labels": [y for _, y in examples]}
    return datasets.Dataset.from_dict(rows), truncated, no_target


def _pack(examples: list[tuple[list[int], list[int]]], max_length: int) -> list[tuple[list[int], list[int]]]:
    ids = [t for x, _ in examples for t in x]
    labels = [t for _, y in examples for t in y]
    pieces = [(ids[i:i + max_length], labels[i:i + max_length]) for i in range(0, len(ids), max_length)]
    # A last piece without a target (all prompt) teaches nothing.
    return [(x, y) for x, y in pieces if any(t != IGNORE for t in y[1:])]


def _sample(frame: pd.DataFrame, limit: int | None, seed: int) -> pd.DataFrame:
    """A seeded sample of ``limit`` rows in file order (no labels to stratify by)."""
    if limit is None or limit >= len(frame):
        return frame
    if limit < 1:
        raise FreezetuneError(f"a row limit must be at least 1, got {limit}")
    taken = np.sort(np.random.default_rng(seed).choice(len(frame), size=limit, replace=False))
    return frame.iloc[taken].reset_index(drop=True)


def load_lm_data(
    train_path: str | Path, *, tokenizer: Any, text_column: str | None = None, prompt_column: str | None = None,
    response_column: str | None = None, eval_path: str | Path | None = None, test_path: str | Path | None = None,
    max_length: int = 128, encoding: str = "auto", validation_fraction: float = 0.1, seed: int = 0,
    max_train_rows: int | None = None, max_eval_rows: int | None = None, header: bool = True,
    chat_template: str = "auto", pack: bool = False,
) -> LanguageModelingData:
    """Read, split and tokenize language-modelling data (see the module docstring).

    Prompt/response data needs both columns; otherwise ``text_column`` (default ``text``)
    holds the text. Without ``eval_path`` the validation set is a seeded ``validation_fraction``
    of the training rows; ``max_train_rows`` / ``max_eval_rows`` take seeded samples.
    """
    check_split_options(validation_fraction, max_length)
    if (prompt_column is None) != (response_column is None):
        raise FreezetuneError("prompt/response data needs both --prompt-column and --response-column")
    columns = (prompt_column, response_column) if prompt_column else (text_column or "text",)
    columns = tuple(str(c) for c in columns)
    fmt = PromptFormat.choose(tokenizer, chat_template)
    read = functools.partial(read_texts, columns=columns, encoding=encoding, header=header)

    train, dropped_train = read(train_path)
    train = _sample(train, max_train_rows, seed)
    dropped = {"train": dropped_train}
    if eval_path is None:
        if len(train) < 2:
            raise FreezetuneError(f"{train_path} has too few rows to split off a validation set: give --eval-data")
        size = validation_size(len(train), validation_fraction, max_eval_rows)
        taken = np.random.default_rng(seed).permutation(len(train))[:size]
        chosen = np.zeros(len(train), dtype=bool)
        chosen[taken] = True
        train, validation = train[~chosen].reset_index(drop=True), train[chosen].reset_index(drop=True)
        source = f"split of training data (seed {seed}, fraction {validation_fraction})"
        dropped["validation"] = 0
    else:
        validation, dropped["validation"] = read(eval_path)
        validation = _sample(validation, max_eval_rows, seed)
        source = "eval-data"
    splits = {"train": train, "validation": validation}
    if test_path is not None:
        splits["test"], dropped["test"] = read(test_path)

    built: dict[str, datasets.Dataset] = {}
    truncated: dict[str, int] = {}
    for split, frame in splits.items():
        built[split], truncated[split], no_target = encode(frame, columns, fmt, max_length, pack, split)
        dropped[split] += no_target
    return LanguageModelingData(
        train=built["train"], validation=built["validation"], test=built.get("test"), validation_source=source,
        truncated=truncated, dropped=dropped, columns=columns, chat_template=fmt.chat_template,
    )


def load_lm_eval_set(
    spec: EvalSetSpec, *, tokenizer: Any, columns: tuple[str, ...], max_length: int = 128, encoding: str = "auto",
    seed: int = 0, max_rows: int | None = None, header: bool = True, chat_template: str = "auto", pack: bool = False,
) -> EvalSet:
    """An evaluation set read, sampled (at most ``max_rows``) and encoded like the validation data."""
    frame, dropped = read_texts(spec.path, columns, encoding=encoding, header=header)
    frame = _sample(frame, max_rows, seed)
    fmt = PromptFormat.choose(tokenizer, chat_template)
    dataset, truncated, no_target = encode(frame, columns, fmt, max_length, pack, f"{spec.name!r}")
    return EvalSet(spec.name, spec.kind, spec.path, dataset, truncated, dropped + no_target)
