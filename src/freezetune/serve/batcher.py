"""Dynamic batching: one worker thread per base, a bounded queue, a bounded wait and a bounded batch.

Requests for one base wait in its queue; the worker takes the first, then keeps collecting
classification requests until the batch holds ``max_batch`` rows or ``max_wait_s`` has passed
since the first, and runs them as one batch through the shared trunk. A generation request runs
alone, in arrival order. A full queue refuses at once (``Busy``: the API answers 503 with
Retry-After) rather than letting latency grow without bound.

One bad request never affects another: inputs are checked before they are queued, and should a
batch still fail, its requests run again one by one so that only the failing one gets the error.
The worker is one thread because torch already uses every core for one batch; a second batch in
parallel would only slow both.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from freezetune.serve.loading import Base
from freezetune.serve.trunk import Batch, classify

log = logging.getLogger("freezetune.serve")

_STOP = object()


class Busy(Exception):
    """The base's queue is full; the client should retry later."""


@dataclass
class Work:
    """One request's share of the worker's time; the result goes to ``future`` on its event loop."""

    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    rows: list[tuple[list[int], list[int] | None]] = field(default_factory=list)  # classification
    wants: dict[str, list[int]] = field(default_factory=dict)  # task -> indices into rows
    run: Callable[[], Any] | None = None  # generation: runs alone in the worker

    def resolve(self, value: Any = None, error: BaseException | None = None) -> None:
        def settle() -> None:
            if self.future.done():  # the client went away; nobody waits for it
                return
            if error is not None:
                self.future.set_exception(error)
            else:
                self.future.set_result(value)

        try:
            self.loop.call_soon_threadsafe(settle)
        except RuntimeError:  # the event loop closed (shutdown): nobody waits either
            pass


class Worker:
    def __init__(self, base: Base, *, max_batch: int = 64, max_wait_s: float = 0.005, max_queue: int = 256):
        self.base = base
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self._held: deque = deque()  # a generation request met while collecting a batch: it runs next
        self.batches = 0
        self.rows = 0
        self._thread = threading.Thread(target=self._loop, name=f"freezetune-serve-{id(self):x}", daemon=True)
        self._thread.start()

    @property
    def waiting(self) -> int:
        return self.queue.qsize() + len(self._held)

    def submit(self, work: Work) -> None:
        try:
            self.queue.put_nowait(work)
        except queue.Full:
            raise Busy from None

    def stop(self, timeout: float = 30.0) -> None:
        """Finish what is queued, then end the thread."""
        try:
            self.queue.put(_STOP, timeout=timeout)
        except queue.Full:
            log.warning("the queue of %s did not drain in %.0f s; stopping anyway", self.base.path, timeout)
            return
        self._thread.join(timeout)

    # ------------------------------------------------------------------ the worker thread
    def _next(self, timeout: float | None = None):
        if self._held:
            return self._held.popleft()
        return self.queue.get(timeout=timeout) if timeout is not None else self.queue.get()

    def _loop(self) -> None:
        while True:
            first = self._next()
            if first is _STOP:
                return
            if first.run is not None:
                self._run_alone(first)
                continue
            items = [first]
            rows = len(first.rows)
            deadline = time.monotonic() + self.max_wait_s
            while rows < self.max_batch:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = self._next(remaining)
                except queue.Empty:
                    break
                if item is _STOP or item.run is not None or rows + len(item.rows) > self.max_batch:
                    self._held.append(item)  # after this batch, in its turn
                    break
                items.append(item)
                rows += len(item.rows)
            self._classify(items)

    def _run_alone(self, work: Work) -> None:
        try:
            work.resolve(work.run())
        except Exception as error:  # noqa: BLE001 - the request's own failure, reported to it alone
            work.resolve(error=error)

    def _classify(self, items: list[Work]) -> None:
        rows: list[tuple[list[int], list[int] | None]] = []
        wants: dict[str, list[int]] = {}
        for item in items:
            offset = len(rows)
            rows.extend(item.rows)
            for name, indices in item.wants.items():
                wants.setdefault(name, []).extend(offset + i for i in indices)
        try:
            probs = classify(self.base, Batch.collate(rows, wants, self.base.tokenizer.pad_token_id or 0))
        except Exception as error:  # noqa: BLE001
            if len(items) > 1:
                log.warning("a batch of %d requests failed (%s); running them one by one", len(items), error)
                for item in items:
                    self._classify([item])
                return
            log.exception("a classification request failed")
            items[0].resolve(error=error)
            return
        self.batches += 1
        self.rows += len(rows)
        cursor: dict[str, int] = {}
        for item in items:
            mine = {}
            for name, indices in item.wants.items():
                start = cursor.get(name, 0)
                mine[name] = probs[name][start:start + len(indices)]
                cursor[name] = start + len(indices)
            item.resolve(mine)
