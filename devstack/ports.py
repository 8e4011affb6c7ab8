"""Ports for stacks that run side by side (the test suite starts two at once, in two
processes). A port found by binding port 0 lies in the kernel's ephemeral range, where any
outgoing connection (a database pool, an HTTP client) can take it as its local port between
the pick and the service's own bind, which then fails with "address already in use". So
ports are picked below that range, and each is held by a lock file for as long as its owner
keeps it, so that another process never picks it too."""

import fcntl
import random
import socket
import tempfile
from pathlib import Path
from typing import IO

from devstack.postgres import free_port

LOCK_DIR = Path(tempfile.gettempdir()) / "cds-ports"
# Above the dev stack's fixed ports (8000-9103) and the well-known services.
LOWEST = 10_000
# Below this many ports under the ephemeral range, picks fall back to the kernel's.
ENOUGH = 1_000
TRIES = 200
LINUX_DEFAULT_EPHEMERAL = (32_768, 60_999)


def ephemeral_range(
    source: Path = Path("/proc/sys/net/ipv4/ip_local_port_range"),
) -> tuple[int, int]:
    try:
        low, high = (int(part) for part in source.read_text().split())
    except (OSError, ValueError):
        return LINUX_DEFAULT_EPHEMERAL
    return low, high


def bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class PortReservations:
    """Ports held for one owner (a launched stack) until `release`; a lock is an open file,
    so a process that dies lets its ports go with it."""

    def __init__(self, lock_dir: Path = LOCK_DIR) -> None:
        self.lock_dir = lock_dir
        self._held: dict[int, IO[str]] = {}

    @property
    def ports(self) -> list[int]:
        return list(self._held)

    def take(self) -> int:
        low, _ = ephemeral_range()
        below = range(LOWEST, low) if low - LOWEST >= ENOUGH else None
        for _ in range(TRIES):
            port = random.choice(below) if below else free_port()  # noqa: S311 (not a secret)
            if port in self._held:
                continue
            lock = self._lock(port)
            if lock is None:
                continue
            if not bindable(port):
                lock.close()
                continue
            self._held[port] = lock
            return port
        raise RuntimeError(f"no free port found in {TRIES} tries (locks in {self.lock_dir})")

    def _lock(self, port: int) -> IO[str] | None:
        self.lock_dir.mkdir(mode=0o777, exist_ok=True)
        handle = (self.lock_dir / f"{port}.lock").open("a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return None
        return handle

    def release(self) -> None:
        for handle in self._held.values():
            handle.close()
        self._held.clear()
