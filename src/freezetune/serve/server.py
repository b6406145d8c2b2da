"""``serve``: load every checkpoint, then listen; SIGTERM lets the requests in flight finish, then exits.

Everything that can be refused is refused before the port opens: a bad checkpoint, a base that
cannot be found or whose weights differ, a port in use. uvicorn runs the app in this thread and
owns SIGINT / SIGTERM while it serves: it stops accepting, waits for open requests (at most
``graceful_s``), and the app's shutdown then drains and stops the workers.
"""

from __future__ import annotations

import importlib.util
import logging
import signal
import socket
import threading
from dataclasses import dataclass, field

from freezetune.core.errors import FreezetuneError
from freezetune.serve.app import Server, create_app
from freezetune.serve.inputs import Limits
from freezetune.serve.loading import Base, load_bases

log = logging.getLogger("freezetune.serve")


@dataclass
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    limits: Limits = field(default_factory=Limits)
    max_batch: int = 64  # rows per trunk forward
    max_wait_ms: float = 5.0  # how long the first request of a batch waits for company
    max_queue: int = 256  # requests waiting per base before 503
    max_body_bytes: int = 4 * 2**20
    graceful_s: float = 30.0

    def check(self) -> None:
        for name, value, low in (("--port", self.port, 0), ("--max-batch", self.max_batch, 1),
                                 ("--max-queue", self.max_queue, 1), ("--max-inputs", self.limits.max_inputs, 1),
                                 ("--max-tokens", self.limits.max_tokens, 1),
                                 ("--default-max-tokens", self.limits.default_max_tokens, 1)):
            if value < low:
                raise FreezetuneError(f"{name} must be at least {low}, got {value}")
        if self.max_wait_ms < 0:
            raise FreezetuneError(f"--max-wait-ms must be 0 or more, got {self.max_wait_ms}")
        if self.limits.default_max_tokens > self.limits.max_tokens:
            raise FreezetuneError(f"--default-max-tokens {self.limits.default_max_tokens} is above --max-tokens "
                                  f"{self.limits.max_tokens}")


def build_server(bases: list[Base], options: ServeOptions) -> Server:
    return Server(bases, options.limits, max_batch=options.max_batch, max_wait_s=options.max_wait_ms / 1000,
                  max_queue=options.max_queue, max_body_bytes=options.max_body_bytes)


def check_port(host: str, port: int) -> None:
    """A port that cannot be bound is one line now, not a traceback after the models loaded."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise FreezetuneError(f"cannot listen on {host}:{port} ({error.strerror}); choose another --port or "
                                  "--host") from None


def serve(checkpoints: list[str], options: ServeOptions, *, log_level: str = "info") -> int:
    """Load, then serve until SIGINT / SIGTERM; return the exit code."""
    missing = [name for name in ("fastapi", "uvicorn") if importlib.util.find_spec(name) is None]
    if missing:
        raise FreezetuneError(f"freezetune serve needs {' and '.join(missing)}: pip install 'freezetune[serve]'")
    options.check()
    check_port(options.host, options.port)
    bases = load_bases(checkpoints)
    import uvicorn

    check_port(options.host, options.port)  # loading took a while: someone may have taken it
    server = build_server(bases, options)
    app = create_app(server)
    config = uvicorn.Config(app, host=options.host, port=options.port, log_config=None, access_log=False,
                            log_level="info" if log_level == "debug" else log_level,  # its debug is per packet
                            timeout_graceful_shutdown=options.graceful_s, lifespan="on")
    tasks = sum(len(b.tasks) for b in bases)
    log.info("serving %d task%s on %d base%s at http://%s:%d (OpenAPI: /docs)", tasks, "s" * (tasks != 1),
             len(bases), "s" * (len(bases) != 1), options.host, options.port)
    received: list[int] = []
    # uvicorn takes SIGINT / SIGTERM over while it serves and raises the signal again once it has shut
    # down; by then the requests in flight are answered, so here that second signal only ends the process.
    main_thread = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.signal(sig, lambda signum, frame: received.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)} if main_thread else {}
    try:
        uvicorn.Server(config).run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("stopped%s", f" on {signal.Signals(received[0]).name}" if received else "")
    return 0
