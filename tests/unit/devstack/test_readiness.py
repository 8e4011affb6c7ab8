"""`make run` stops waiting as soon as a program cannot come up, and says which."""

from pathlib import Path

import devstack.__main__ as launcher
from devstack.postgres import free_port
from devstack.stack import build_stack


class FakeSupervisor:
    """supervisord's answers, one list of programs per poll; the last one repeats."""

    def __init__(self, polls: list[list[dict]], logs: dict[str, str]) -> None:
        self.polls = polls
        self.logs = logs
        self.process = None
        self.prometheus_binary = None

    def process_info(self) -> list[dict]:
        return self.polls.pop(0) if len(self.polls) > 1 else self.polls[0]

    def log_tail(self, name: str) -> str:
        return self.logs.get(name, "")


def unreachable_stack(tmp_path: Path):
    """A stack whose ports nothing listens on: never ready."""
    ports = {f"{p}_PORT": str(free_port()) for p in ("AUTH", "INFERENCE", "DATA", "GATEWAY")}
    return build_stack({**ports, "FRONTEND_PORT": str(free_port())}, "postgresql://x/y", tmp_path)


def program(name: str, state: str, start: int) -> dict:
    return {"name": name, "statename": state, "start": start}


def test_a_program_that_keeps_exiting_after_a_slow_start_is_named(tmp_path, capsys):
    polls = [
        [program("gateway", "STARTING", 0), program("inference", "STARTING", 100)],
        [program("gateway", "RUNNING", 0), program("inference", "RUNNING", 100)],
        [program("gateway", "RUNNING", 0), program("inference", "STARTING", 112)],
        [program("gateway", "RUNNING", 0), program("inference", "RUNNING", 125)],
    ]
    supervisor = FakeSupervisor(polls, {"inference": "OSError: model folder unreadable"})
    assert not launcher.wait_until_ready(unreachable_stack(tmp_path), supervisor, 600)
    printed = capsys.readouterr().out
    assert "[devstack] inference failed to start (started 3 times); its last log lines:" in printed
    assert "OSError: model folder unreadable" in printed
    assert "gateway failed" not in printed


def test_a_program_supervisord_gave_up_on_is_named_at_once(tmp_path, capsys):
    supervisor = FakeSupervisor([[program("data", "FATAL", 5)]], {})
    assert not launcher.wait_until_ready(unreachable_stack(tmp_path), supervisor, 600)
    printed = capsys.readouterr().out
    assert "[devstack] data failed to start (FATAL); its last log lines:" in printed
    assert "(it logs to this terminal: see above)" in printed


def test_at_the_deadline_it_says_what_it_waited_for(tmp_path, capsys):
    supervisor = FakeSupervisor([[program("gateway", "RUNNING", 7)]], {"gateway": "still busy"})
    assert not launcher.wait_until_ready(unreachable_stack(tmp_path), supervisor, 0.5)
    printed = capsys.readouterr().out
    assert "not ready after 0s (DEVSTACK_READY_TIMEOUT): waiting for {'gateway'" in printed
    assert "[devstack] gateway not ready (RUNNING); its last log lines:\nstill busy" in printed
