"""Completion responses in OpenAI's shapes: one JSON body, or server-sent events as tokens come.

A streamed request is queued before the response starts, so a full queue is still a plain 503.
Each event is one ``data: {chunk}`` line; the stream ends with ``data: [DONE]``. A client that
disconnects cancels its decoding after the current step.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

from freezetune.serve.batcher import Busy
from freezetune.serve.generation import Choice, Decoding
from freezetune.serve.inputs import ApiError
from freezetune.serve.loading import Base, ServedTask


def _usage(prompts: list[list[int]], choices: list[Choice]) -> dict[str, int]:
    prompt = sum(len(p) for p in prompts)
    completion = sum(len(c.tokens) for c in choices)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _choice(choice: Choice, chat: bool, cut: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"index": choice.index}
    if chat:
        body["message"] = {"role": "assistant", "content": choice.text}
    else:
        body["text"] = choice.text
    body.update(logprobs=None, finish_reason=choice.finish_reason)
    if cut:
        body["truncated"] = True  # the prompt lost its first tokens (truncate: true)
    return body


async def generation_response(server, base: Base, task: ServedTask, body, prompts: list[list[int]], cut: list[bool],
                              *, max_tokens: int, stop: list[str], chat: bool):
    from fastapi.responses import StreamingResponse

    head = {"id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}",
            "object": "chat.completion" if chat else "text_completion", "created": int(time.time()),
            "model": task.name}
    if not body.stream:
        decoding = Decoding(task, prompts, max_tokens=max_tokens, stop=stop)
        choices = await server.submit(base, server.work(run=decoding.run))
        return {**head, "choices": [_choice(c, chat, k) for c, k in zip(choices, cut)],
                "usage": _usage(prompts, choices)}

    loop = asyncio.get_running_loop()
    events: asyncio.Queue = asyncio.Queue()

    def on_text(index: int, text: str) -> None:  # called in the worker thread
        loop.call_soon_threadsafe(events.put_nowait, ("text", index, text))

    decoding = Decoding(task, prompts, max_tokens=max_tokens, stop=stop, on_text=on_text)
    work = server.work(run=decoding.run)
    try:
        server.workers[id(base)].submit(work)
    except Busy:
        raise ApiError(503, f"the queue of {base.path} is full; retry in {server.retry_after_s} s", None,
                       "server_busy", {"Retry-After": str(server.retry_after_s)}) from None
    work.future.add_done_callback(lambda future: events.put_nowait(("end", future, None)))
    chunk_head = {**head, "object": "chat.completion.chunk" if chat else "text_completion"}
    include_usage = bool(body.stream_options and body.stream_options.include_usage)

    def event(payload: dict) -> str:
        return f"data: {json.dumps(payload)}\n\n"

    def delta(index: int, text: str | None, finish: str | None = None, role: bool = False) -> str:
        if chat:
            piece: dict[str, Any] = {}
            if role:
                piece["role"] = "assistant"
            if text is not None:
                piece["content"] = text
            item = {"index": index, "delta": piece, "logprobs": None, "finish_reason": finish}
        else:
            item = {"index": index, "text": text or "", "logprobs": None, "finish_reason": finish}
        return event({**chunk_head, "choices": [item]})

    async def stream():
        try:
            if chat:
                for i in range(len(prompts)):
                    yield delta(i, "", role=True)
            while True:
                kind, first, text = await events.get()
                if kind == "text":
                    yield delta(first, text)
                    continue
                error = first.exception()
                if error is not None:
                    yield event(ApiError(500, f"generation failed: {error}", None, "internal_error").body())
                    break
                choices = first.result()
                for choice in choices:
                    yield delta(choice.index, None if chat else "", choice.finish_reason)
                if include_usage:
                    yield event({**chunk_head, "choices": [], "usage": _usage(prompts, choices)})
                break
            yield "data: [DONE]\n\n"
        finally:
            decoding.cancelled.set()  # a client that left stops the decoding after this step

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
