"""Ports of stacks started side by side: below the ephemeral range, bindable, and never the
same for two owners, even in two processes (devstack.ports)."""

import socket
import subprocess
import sys

import pytest

from devstack import ROOT, ports
from devstack.ports import PortReservations, ephemeral_range


@pytest.fixture
def reservations(tmp_path):
    held = PortReservations(tmp_path / "locks")
    yield held
    held.release()


def test_ports_are_below_the_ephemeral_range_and_free(reservations):
    low, _ = ephemeral_range()
    taken = [reservations.take() for _ in range(12)]
    assert len(set(taken)) == 12
    for port in taken:
        assert ports.LOWEST <= port < low
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", port))  # nothing holds it yet: the service can bind it


def test_a_port_held_by_one_owner_is_not_given_to_another(tmp_path, monkeypatch):
    # Two ports to choose from: the second owner must get the one the first does not hold.
    monkeypatch.setattr(ports, "ephemeral_range", lambda: (ports.LOWEST + ports.ENOUGH, 65535))
    candidates = iter([ports.LOWEST + 7] * 5 + [ports.LOWEST + 8] * 5)
    monkeypatch.setattr(ports.random, "choice", lambda _: next(candidates))
    first, second = PortReservations(tmp_path), PortReservations(tmp_path)
    try:
        assert first.take() == ports.LOWEST + 7
        assert second.take() == ports.LOWEST + 8
    finally:
        first.release()
        second.release()


# A separate interpreter, as another stack's owner would be: it takes the lock, says so, and
# keeps it until its stdin closes.
HOLDER = """
import sys
from pathlib import Path
from devstack.ports import PortReservations
handle = PortReservations(Path(sys.argv[1]))._lock(int(sys.argv[2]))
print("held" if handle is not None else "refused", flush=True)
sys.stdin.read()
"""


def test_a_lock_held_in_another_process_is_respected_and_freed_when_it_ends(tmp_path):
    port = ports.LOWEST + 11
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path), str(port)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        # readline blocks until the child has answered (or died: then it reads "").
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        assert PortReservations(tmp_path)._lock(port) is None
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(60)
    again = PortReservations(tmp_path)._lock(port)
    assert again is not None
    again.close()


def test_a_port_something_listens_on_is_passed_over(reservations, monkeypatch):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        busy = listener.getsockname()[1]
        candidates = iter([busy, busy, ports.LOWEST + 21])
        monkeypatch.setattr(ports.random, "choice", lambda _: next(candidates))
        monkeypatch.setattr(ports, "ephemeral_range", lambda: (65000, 65535))
        assert reservations.take() == ports.LOWEST + 21


def test_without_room_below_the_ephemeral_range_the_kernel_picks(reservations, monkeypatch):
    monkeypatch.setattr(ports, "ephemeral_range", lambda: (1024, 65535))
    port = reservations.take()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))


def test_the_range_is_read_from_the_kernel_or_linux_s_default(tmp_path):
    source = tmp_path / "range"
    source.write_text("40000\t50000\n")
    assert ephemeral_range(source) == (40000, 50000)
    assert ephemeral_range(tmp_path / "missing") == ports.LINUX_DEFAULT_EPHEMERAL
