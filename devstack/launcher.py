"""Starts the dev stack exactly as `make run` does (`python -m devstack run`), on free ports
and in a folder of its own, and waits until it is ready: for the tests and the benchmarks."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from pathlib import Path

from devstack import ROOT
from devstack.ports import PortReservations
from devstack.stack import COMPONENTS
from devstack.supervisor import Supervisor

READY_FILE = "stack-ready.json"
# The banner's last line, for people; programs wait on the ready file.
BANNER_LAST_LINE = "Press Ctrl-C to stop."


def ready_file(var_dir: Path) -> Path:
    """Written by `python -m devstack run` once every service is ready, removed when it
    stops: a signal for programs, where the banner is for people."""
    return var_dir / READY_FILE


def read_ready(var_dir: Path) -> dict:
    try:
        return json.loads(ready_file(var_dir).read_text())
    except (OSError, ValueError):
        return {}


class LaunchedStack:
    def __init__(
        self,
        database_urls: dict[str, str],
        server_url: str,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        # Short: supervisord's control socket lives below it.
        self.var_dir = Path(tempfile.mkdtemp(prefix="cds-stack-"))
        self.log_dir = self.var_dir / "logs"
        # Held until `close`, so a stack started beside this one never gets the same ports.
        self.reservations = PortReservations()
        # Prometheus runs too when its binary is installed.
        self.ports = {
            name: self.reservations.take() for name in [*(c.name for c in COMPONENTS), "prometheus"]
        }
        self.env = {
            **os.environ,
            "DATABASE_URL": server_url,
            "DEVSTACK_VAR_DIR": str(self.var_dir),
            "DEVSTACK_LOG_DIR": str(self.log_dir),
            # Generous, for a slow machine: the launcher stops waiting at once when a process
            # fails for good, and says which.
            "DEVSTACK_READY_TIMEOUT": "600",
            # Each stack's own models folder, where the launcher copies the shipped demo model.
            "DEVSTACK_MODELS_DIR": str(self.var_dir / "models"),
            **{f"{c.env_prefix}PORT": str(self.ports[c.name]) for c in COMPONENTS},
            "DEVSTACK_PROMETHEUS_PORT": str(self.ports["prometheus"]),
            **{
                f"{c.env_prefix}DATABASE_URL": database_urls[c.name]
                for c in COMPONENTS
                if c.database
            },
            **(extra_env or {}),
        }
        self.process: subprocess.Popen[str] | None = None
        self.output_file = self.var_dir / "launcher.out"

    @property
    def models_dir(self) -> Path:
        return Path(self.env["DEVSTACK_MODELS_DIR"])

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def start(self, timeout_s: float = 900.0) -> "LaunchedStack":
        """Start the launcher and wait until it says it is ready. It keeps its own deadline
        (DEVSTACK_READY_TIMEOUT) and exits saying which process did not come up; `timeout_s`
        only guards against a launcher that hangs. On failure everything it started is
        stopped, and the error carries the launcher's output and each service's last lines."""
        output = self.output_file.open("a")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "devstack", "run"],
            cwd=ROOT,
            env=self.env,
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + timeout_s
        while not self.ready():
            if self.process.poll() is not None:
                self._fail(f"the launcher exited with {self.process.returncode}")
            if time.monotonic() > deadline:
                self._fail(f"the launcher did not write {self.ready_file} within {timeout_s:.0f} s")
            time.sleep(0.3)
        return self

    @property
    def ready_file(self) -> Path:
        return ready_file(self.var_dir)

    def ready(self) -> bool:
        """Whether this launch (not an earlier one in the same folder) says it is ready."""
        assert self.process is not None
        return read_ready(self.var_dir).get("launcher_pid") == self.process.pid

    def _fail(self, reason: str) -> None:
        output = self.output()
        # The launcher names the process that did not come up, with its last lines; when it
        # could not say (it hung, or failed before starting them), every service's are shown.
        said = "its last log lines:" in output
        logs = "".join(
            f"\n--- last lines of {name}.log ---\n{tail(self.log(name), 15)}"
            for name in self.ports
            if self.log(name) and not said
        )
        message = (
            f"The stack did not start: {reason}.\n--- launcher output ---\n{tail(output, 60)}{logs}"
        )
        self.close()
        raise StackDidNotStart(message)

    def output(self) -> str:
        return self.output_file.read_text() if self.output_file.exists() else ""

    def log(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text() if path.exists() else ""

    def supervisorctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        from devstack.stack import build_stack

        stack = build_stack(self.env, self.env["DATABASE_URL"], self.var_dir)
        return Supervisor(stack).ctl(*args)

    def interrupt(self, timeout_s: float = 90.0) -> int:
        """Ctrl-C, as a person in the terminal would."""
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=timeout_s)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            try:
                self.interrupt()
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.kill_leftovers()
        shutil.rmtree(self.var_dir, ignore_errors=True)
        self.reservations.release()

    def leftover_pids(self) -> list[int]:
        """Processes this stack started that still run: every one of them (launcher,
        supervisord, services, Prometheus) inherits the stack's own DEVSTACK_VAR_DIR."""
        return processes_with_env("DEVSTACK_VAR_DIR", str(self.var_dir))

    def kill_leftovers(self) -> None:
        for pid in self.leftover_pids():
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


class StackDidNotStart(RuntimeError):
    pass


def tail(text: str, lines: int) -> str:
    return "\n".join(text.splitlines()[-lines:])


def processes_with_env(name: str, value: str) -> list[int]:
    """Live processes whose environment has `name=value`, read from /proc (Linux)."""
    wanted = f"{name}={value}".encode()
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        with suppress(OSError):
            if wanted in environ.read_bytes().split(b"\0"):
                found.append(int(environ.parent.name))
    return found
