"""The HTTP API (FastAPI): health, models, classify (vLLM's shape, fan-out extension), completions, chat.

Every error is a JSON body in OpenAI's shape with the status that says whose fault it was: 400 a
bad field (named in ``param``), 404 an unknown task, 413 a body too large, 503 a full queue (with
Retry-After). Handlers only check, queue and format; the model runs in the base's worker.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

from freezetune.core.config import CAUSAL_LM, CLASSIFICATION
from freezetune.serve.batcher import Busy, Work, Worker
from freezetune.serve.inputs import ApiError, Limits, classification_rows, find_task, prompt_rows
from freezetune.serve.loading import Base
from freezetune.serve.protocol import ChatRequest, ClassifyRequest, CompletionRequest
from freezetune.serve.streaming import generation_response

log = logging.getLogger("freezetune.serve")


class Server:
    """What the routes share: the bases, a worker per base, the limits."""

    def __init__(self, bases: list[Base], limits: Limits, *, max_batch: int, max_wait_s: float, max_queue: int,
                 max_body_bytes: int, retry_after_s: int = 1):
        self.bases = bases
        self.by_task = {name: base for base in bases for name in base.tasks}
        self.limits = limits
        self.max_body_bytes = max_body_bytes
        self.retry_after_s = retry_after_s
        self.worker_options = {"max_batch": max_batch, "max_wait_s": max_wait_s, "max_queue": max_queue}
        self.workers: dict[int, Worker] = {}
        self.started = time.time()

    def start(self) -> None:
        self.workers = {id(base): Worker(base, **self.worker_options) for base in self.bases}

    def stop(self) -> None:
        for worker in self.workers.values():
            worker.stop()

    async def submit(self, base: Base, work: Work) -> Any:
        try:
            self.workers[id(base)].submit(work)
        except Busy:
            raise ApiError(503, f"the queue of {base.path} is full; retry in {self.retry_after_s} s", None,
                           "server_busy", {"Retry-After": str(self.retry_after_s)}) from None
        return await work.future

    def work(self, **fields) -> Work:
        loop = asyncio.get_running_loop()
        return Work(loop.create_future(), loop, **fields)


def create_app(server: Server):
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    @asynccontextmanager
    async def lifespan(app):
        server.start()
        yield
        server.stop()  # after uvicorn let the requests in flight finish

    app = FastAPI(title="freezetune serve", version="1", lifespan=lifespan,
                  description="Many compact checkpoints on one base model; the shared frozen trunk runs once.")

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError):
        return JSONResponse(error.body(), status_code=error.status, headers=error.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException):
        return JSONResponse(ApiError(error.status_code, str(error.detail), None, "not_found" if error.status_code == 404
                                     else "invalid_request_error").body(), status_code=error.status_code,
                            headers=getattr(error, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, error: RequestValidationError):
        return JSONResponse(validation_error(error.errors()).body(), status_code=400)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        start = time.perf_counter()
        size = request.headers.get("content-length")
        if size is not None and size.isdigit() and int(size) > server.max_body_bytes:
            response = JSONResponse(ApiError(413, f"the request body has {size} bytes; at most "
                                                  f"{server.max_body_bytes} (--max-body-bytes)").body(),
                                    status_code=413)
        else:
            try:
                response = await call_next(request)
            except Exception:  # noqa: BLE001 - the server keeps serving; this request gets a 500
                log.exception("%s %s failed", request.method, request.url.path)
                response = JSONResponse(ApiError(500, "internal error; see the server's log", None,
                                                 "internal_error").body(), status_code=500)
        log.debug("%s %s %d %.1f ms", request.method, request.url.path, response.status_code,
                  1000 * (time.perf_counter() - start))
        return response

    @app.get("/health")
    async def health():
        return {"status": "ok", "uptime_s": round(time.time() - server.started, 1),
                "bases": [{**b.describe(), "waiting": server.workers[id(b)].waiting if server.workers else 0}
                          for b in server.bases]}

    @app.get("/v1/models")
    async def models():
        created = int(server.started)
        return {"object": "list", "data": [{**task.describe(base), "created": created}
                                           for base in server.bases for task in base.tasks.values()]}

    async def classify(body: ClassifyRequest):
        rows = classification_rows(server.by_task, body.model, body.input, body.truncate, server.limits)
        work = server.work(rows=rows.rows, wants=rows.wants)
        probs = await server.submit(rows.base, work)
        results = {}
        for task in rows.tasks:
            p = probs[task.name]
            data = []
            for i, row in enumerate(rows.wants[task.name]):
                values = p[i].tolist()
                item = {"index": i, "label": task.labels[max(range(len(values)), key=values.__getitem__)],
                        "probs": values, "num_classes": len(values)}
                if rows.truncated[task.name][i]:
                    item["truncated"] = True
                data.append(item)
            results[task.name] = data
        single = isinstance(body.model, str)
        return {"id": f"classify-{uuid.uuid4().hex}", "object": "list", "created": int(time.time()),
                "model": body.model, "data": results[body.model] if single else results,
                "usage": {"prompt_tokens": rows.prompt_tokens, "total_tokens": rows.prompt_tokens,
                          "completion_tokens": 0, "prompt_tokens_details": None}}

    app.post("/v1/classify")(classify)
    app.post("/classify", include_in_schema=False)(classify)  # vLLM's own path

    async def generation(body, prompts: list[list[int]], cut: list[bool], chat: bool):
        base, task = server.by_task[body.model], server.by_task[body.model].tasks[body.model]
        max_tokens = getattr(body, "max_completion_tokens", None) or body.max_tokens or server.limits.default_max_tokens
        if max_tokens > server.limits.max_tokens:
            raise ApiError(400, f"max_tokens is {max_tokens}; this server generates at most {server.limits.max_tokens} "
                                "(--max-tokens)", "max_tokens")
        stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
        if len(stop) > 4:
            raise ApiError(400, f"stop has {len(stop)} strings; at most 4", "stop")
        return await generation_response(server, base, task, body, prompts, cut, max_tokens=max_tokens, stop=stop,
                                         chat=chat)

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest):
        _, task = find_task(server.by_task, body.model, CAUSAL_LM)
        texts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        if not texts:
            raise ApiError(400, "prompt is empty; give a text or a list of texts", "prompt")
        if len(texts) > server.limits.max_inputs:
            raise ApiError(400, f"prompt has {len(texts)} items; at most {server.limits.max_inputs} per request",
                           "prompt")
        too_long = next((i for i, t in enumerate(texts) if len(t) > server.limits.max_chars), None)
        if too_long is not None:
            raise ApiError(400, f"prompt[{too_long}] has over {server.limits.max_chars} characters", "prompt")
        prompts, cut = prompt_rows(task, task.prompt_format.prompts(texts), body.truncate, "prompt")
        return await generation(body, prompts, cut, chat=False)

    @app.post("/v1/chat/completions")
    async def chat(body: ChatRequest):
        _, task = find_task(server.by_task, body.model, CAUSAL_LM)
        fmt = task.prompt_format
        if not fmt.chat_template:
            raise ApiError(400, f"task {task.name!r} was trained without a chat template; send plain prompts to "
                                "/v1/completions", "messages")
        if sum(len(m.content) for m in body.messages) > server.limits.max_chars:
            raise ApiError(400, f"messages have over {server.limits.max_chars} characters", "messages")
        messages = [{"role": m.role, "content": m.content} for m in body.messages]
        rendered = fmt.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = fmt.tokenizer(rendered, add_special_tokens=False)["input_ids"]
        prompts, cut = prompt_rows(task, [ids], body.truncate, "messages")
        return await generation(body, prompts, cut, chat=True)

    app.state.kinds = (CLASSIFICATION, CAUSAL_LM)
    return app


def validation_error(errors: list[dict]) -> ApiError:
    """FastAPI's validation errors as one message naming the first bad field (``messages[0].role``)."""
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    if first.get("type") == "json_invalid":
        reason = (first.get("ctx") or {}).get("error", first.get("msg"))
        return ApiError(400, f"the request body is not valid JSON: {reason}")
    field = ""
    for part in first.get("loc", ())[1:]:  # loc[0] is "body"
        if isinstance(part, int):
            field += f"[{part}]"
        elif not _is_type_tag(str(part)):
            field += f".{part}" if field else str(part)
    if first.get("type") == "extra_forbidden":
        return ApiError(400, f"unknown field {field!r}", field)
    if first.get("type") == "missing":
        return ApiError(400, f"field {field!r} is required", field)
    why = " (decoding is greedy: temperature 0, top_p 1, one choice)" if field in ("temperature", "top_p", "n") else ""
    return ApiError(400, f"field {field!r}: {first.get('msg', 'invalid')}{why}", field or None)


def _is_type_tag(part: str) -> bool:
    """The name pydantic gives an alternative of a union in an error's path (``str``, ``list[str]``)."""
    return part in ("str", "int", "float", "bool") or part.startswith(
        ("list[", "dict[", "union[", "literal[", "function-", "nullable["))
