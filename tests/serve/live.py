"""A real server (uvicorn on a free port of 127.0.0.1) in a thread of the test process."""

from __future__ import annotations

import contextlib
import socket
import threading
import time


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def live_server(bases, **options):
    """Yield (base URL, Server) while uvicorn serves ``bases``; stop it on exit."""
    import uvicorn

    from freezetune.serve.app import create_app
    from freezetune.serve.server import ServeOptions, build_server

    port = free_port()
    server = build_server(bases, ServeOptions(port=port, **options))
    config = uvicorn.Config(create_app(server), host="127.0.0.1", port=port, log_config=None, access_log=False,
                            lifespan="on", log_level="warning")
    runner = uvicorn.Server(config)
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not runner.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", server
    finally:
        runner.should_exit = True
        thread.join(30)
