"""A Redis server for the tests of shared rate limits: `TEST_REDIS_URL`, else the one on
127.0.0.1:6379, else a private `redis-server` on a free port (Debian's redis-server)."""

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

from devstack.postgres import free_port

LOCAL_REDIS_URL = "redis://127.0.0.1:6379/15"


def answers(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port or 6379), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def redis_url() -> Iterator[str]:
    configured = os.environ.get("TEST_REDIS_URL")
    if configured:
        yield configured
        return
    if answers(LOCAL_REDIS_URL):
        yield LOCAL_REDIS_URL
        return
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError(
            "No Redis for the rate-limit tests: set TEST_REDIS_URL, run one on "
            "127.0.0.1:6379, or install redis-server."
        )
    port = free_port()
    with tempfile.TemporaryDirectory() as workdir:
        server = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", workdir],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"redis://127.0.0.1:{port}/0"
        try:
            deadline = time.monotonic() + 10
            while not answers(url):
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start")
                time.sleep(0.05)
            yield url
        finally:
            server.terminate()
            server.wait(10)
