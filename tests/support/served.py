"""An ASGI app served by uvicorn on 127.0.0.1 in a thread, for tests that need real HTTP
(streamed bodies, a client hanging up mid-request)."""

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from devstack.postgres import free_port

START_DEADLINE_S = 30.0


@contextmanager
def served(app) -> Iterator[str]:
    """The app's base URL while the block runs; the server stops when it ends."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_config=None, lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_DEADLINE_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise AssertionError(f"the test server on port {port} did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(START_DEADLINE_S)
