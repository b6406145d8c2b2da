"""Requests into token rows, checked before anything is queued: every refusal names its field.

A fan-out request (``model`` a list) tokenizes each input once; tasks whose tokens agree share
the row (and so the trunk). Inputs are never cut silently: longer than a task's limit (its
training ``max_length``, which is also where ``freezetune predict`` cuts) is refused unless the
request says ``truncate``; then each result that was cut says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from freezetune.core.config import CAUSAL_LM, CLASSIFICATION
from freezetune.serve.loading import Base, ServedTask


class ApiError(Exception):
    """An HTTP error with OpenAI's error body: ``{"error": {"message", "type", "param", "code"}}``."""

    def __init__(self, status: int, message: str, param: str | None = None, kind: str = "invalid_request_error",
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.kind, self.headers = status, message, param, kind, headers

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.status}}


@dataclass
class Limits:
    max_inputs: int = 64  # texts (or prompts) per request
    max_tasks: int = 16  # task names per fan-out request
    max_chars: int = 100_000  # characters per text, checked before tokenizing
    default_max_tokens: int = 32  # generated tokens when a request names none (predict's default)
    max_tokens: int = 512  # generated tokens at most


@dataclass
class Rows:
    """What a classification request queues: token rows and which rows each task reads per input."""

    base: Base
    tasks: list[ServedTask]
    rows: list[tuple[list[int], list[int] | None]] = field(default_factory=list)
    wants: dict[str, list[int]] = field(default_factory=dict)  # task -> a row per input
    truncated: dict[str, list[bool]] = field(default_factory=dict)
    prompt_tokens: int = 0


def find_task(bases: dict[str, Base], name: str, kind: str, param: str = "model") -> tuple[Base, ServedTask]:
    base = bases.get(name)
    if base is None:
        known = ", ".join(sorted(bases)) or "none"
        raise ApiError(404, f"no task named {name!r}; served tasks: {known} (GET /v1/models)", param,
                       "model_not_found")
    task = base.tasks[name]
    if task.kind != kind:
        where = "/v1/classify" if task.kind == CLASSIFICATION else "/v1/completions or /v1/chat/completions"
        raise ApiError(400, f"task {name!r} is a {task.kind} task; send it to {where}", param)
    return base, task


def classification_rows(bases: dict[str, Base], model: str | list[str], data, truncate: bool,
                        limits: Limits) -> Rows:
    names = [model] if isinstance(model, str) else list(model)
    if not names:
        raise ApiError(400, "model is an empty list; name at least one task", "model")
    if len(names) > limits.max_tasks:
        raise ApiError(400, f"model names {len(names)} tasks; at most {limits.max_tasks} per request", "model")
    if len(set(names)) < len(names):
        raise ApiError(400, "model names a task twice", "model")
    found = [find_task(bases, name, CLASSIFICATION) for name in names]
    base = found[0][0]
    tasks = [task for _, task in found]
    for other, task in found[1:]:
        if other is not base:
            raise ApiError(400, f"tasks {names[0]!r} and {task.name!r} run on different bases; a fan-out request "
                                "shares one base's trunk: send one request per base", "model")
    pair = tasks[0].pair
    mixed = next((t for t in tasks if t.pair != pair), None)
    if mixed is not None:
        raise ApiError(400, f"task {mixed.name!r} and {tasks[0].name!r} take different inputs (text pairs and "
                            "single texts); send them separately", "model")
    items = _items(data, pair, tasks[0].name, limits)
    out = Rows(base, tasks)
    index: dict[tuple, int] = {}
    tokenizer = base.tokenizer
    for limit in sorted({t.max_length for t in tasks}):
        texts = [text for text, _ in items]
        pairs = [p for _, p in items] if pair else None
        encoded = tokenizer(texts, pairs, add_special_tokens=True, truncation=False)
        lengths = [len(ids) for ids in encoded["input_ids"]]
        if truncate and any(n > limit for n in lengths):
            encoded = tokenizer(texts, pairs, add_special_tokens=True, truncation=True, max_length=limit)
        types = encoded.get("token_type_ids")
        rows = []
        for i, ids in enumerate(encoded["input_ids"]):
            if len(ids) > limit:
                task = next(t for t in tasks if t.max_length == limit)
                raise ApiError(400, f"input[{i}] has {len(ids)} tokens; task {task.name!r} takes at most {limit} "
                                    "(its training max_length); shorten it, or pass \"truncate\": true to cut it",
                               "input")
            key = (tuple(ids), tuple(types[i]) if types is not None else None)
            if key not in index:
                index[key] = len(out.rows)
                out.rows.append((list(ids), list(types[i]) if types is not None else None))
                out.prompt_tokens += len(ids)
            rows.append(index[key])
        for task in tasks:
            if task.max_length == limit:
                out.wants[task.name] = rows
                out.truncated[task.name] = [n > limit for n in lengths]
    return out


def _items(data, pair: bool, name: str, limits: Limits) -> list[tuple[str, str | None]]:
    """(text, pair) per input; the shape a task takes is checked here, each item by its index."""
    if isinstance(data, str):
        if pair:
            raise ApiError(400, f"task {name!r} classifies text pairs: give input as [text, pair] or a list of "
                                "[text, pair] items", "input")
        data = [data]
    elif pair and len(data) == 2 and all(isinstance(x, str) for x in data):
        data = [data]  # one [text, pair] item
    if not data:
        raise ApiError(400, "input is empty; give a text or a list of texts", "input")
    if len(data) > limits.max_inputs:
        raise ApiError(400, f"input has {len(data)} items; this server takes at most {limits.max_inputs} per "
                            "request (split it, or start the server with a larger --max-inputs)", "input")
    items: list[tuple[str, str | None]] = []
    for i, item in enumerate(data):
        if pair:
            if isinstance(item, str) or len(item) != 2:
                raise ApiError(400, f"input[{i}] must be a [text, pair] item: task {name!r} classifies text pairs",
                               f"input[{i}]")
            text, second = item
        else:
            if not isinstance(item, str):
                raise ApiError(400, f"input[{i}] must be a text: task {name!r} classifies single texts, not pairs",
                               f"input[{i}]")
            text, second = item, None
        for part in (text, second):
            if part is not None and len(part) > limits.max_chars:
                raise ApiError(400, f"input[{i}] has {len(part)} characters; at most {limits.max_chars}", f"input[{i}]")
        items.append((text, second))
    return items


def prompt_rows(task: ServedTask, encoded: list[list[int]], truncate: bool, param: str) -> tuple[list[list[int]],
                                                                                                  list[bool]]:
    """Prompts' token ids within the task's limit (the last ``max_length`` tokens, as predict keeps)."""
    assert task.kind == CAUSAL_LM
    out, cut = [], []
    for i, ids in enumerate(encoded):
        if len(ids) > task.max_length and not truncate:
            where = f"{param}[{i}]" if len(encoded) > 1 else param
            raise ApiError(400, f"{where} has {len(ids)} tokens; task {task.name!r} takes at most {task.max_length} "
                                "(its training max_length); shorten it, or pass \"truncate\": true to keep its last "
                                f"{task.max_length} tokens", param)
        out.append(ids[-task.max_length:])
        cut.append(len(ids) > task.max_length)
    return out, cut
