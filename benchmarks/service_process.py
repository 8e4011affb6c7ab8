"""A service as the benchmarks run it: `python -m <package>` on a temporary database (migrated
first, dropped afterwards) and trusting a JWKS server of its own, so the benchmark can mint
the bearer tokens it sends."""

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import OKPAlgorithm

from common.migrations import drop_database, upgrade
from devstack import ROOT
from devstack.postgres import LOCAL_SERVER_URL, free_port, with_database

Ready = Callable[[httpx.Response], bool]


def temporary_database_url(name: str) -> str:
    server = (
        os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL") or LOCAL_SERVER_URL
    )
    return with_database(server, f"{name}_{os.getpid()}")


def jwks_server(key: Ed25519PrivateKey) -> tuple[ThreadingHTTPServer, str]:
    body = json.dumps(
        {"keys": [{**OKPAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": "bench"}]}
    ).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def token(key: Ed25519PrivateKey, subject: str = "bench") -> str:
    now = int(time.time())
    return jwt.encode(
        {
            "iss": "cds-auth",
            "aud": "cds-api",
            "sub": subject,
            "role": "clinician",
            "typ": "access",
            "iat": now,
            "exp": now + 3600,
            "jti": str(uuid.uuid4()),
        },
        key,
        algorithm="EdDSA",
        headers={"kid": "bench"},
    )


@contextmanager
def service_process(
    package: str,
    prefix: str,
    database_url: str,
    settings: dict[str, str],
    ready: Ready,
    subject: str = "bench",
) -> Iterator[tuple[subprocess.Popen, str, dict[str, str]]]:
    """`python -m <package>` with `settings` (names without the `prefix`), once `ready`
    holds for its `/ready` answer: its process, base URL and a clinician's Authorization
    header (subject `subject`). Everything is stopped, and the database dropped, afterwards."""
    upgrade(ROOT / package, database_url)
    key = Ed25519PrivateKey.generate()
    jwks, jwks_url = jwks_server(key)
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        f"{prefix}PORT": str(port),
        f"{prefix}DATABASE_URL": database_url,
        f"{prefix}AUTH_URL": jwks_url,
        f"{prefix}LOG_LEVEL": "WARNING",
        **{f"{prefix}{name.upper()}": value for name, value in settings.items()},
    }
    process = subprocess.Popen(
        [sys.executable, "-m", package],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(base, process, ready, package)
        yield process, base, {"Authorization": f"Bearer {token(key, subject)}"}
    finally:
        process.terminate()
        process.wait(timeout=30)
        jwks.shutdown()
        asyncio.run(drop_database(database_url))


def wait_until(
    base: str, process: subprocess.Popen, ready: Ready, name: str, deadline_s: float = 180
) -> None:
    """Until `ready` holds for the service's `/ready` answer; an error if it exits first or
    is not ready within `deadline_s`."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}")
        try:
            if ready(httpx.get(f"{base}/ready", timeout=2)):
                return
        except (httpx.TransportError, ValueError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{name} was not ready within {deadline_s} s")
