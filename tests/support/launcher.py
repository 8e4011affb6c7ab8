"""Starts the dev stack exactly as `make run` does (`python -m devstack run`), on free ports."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from devstack import ROOT
from devstack.postgres import free_port
from devstack.stack import COMPONENTS
from devstack.supervisor import Supervisor

SHARED_MODELS_DIR = Path(tempfile.gettempdir()) / f"cds-test-models-{os.getpid()}"


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
        # Prometheus runs too when its binary is installed.
        self.ports = {name: free_port() for name in [*(c.name for c in COMPONENTS), "prometheus"]}
        self.env = {
            **os.environ,
            "DATABASE_URL": server_url,
            "DEVSTACK_VAR_DIR": str(self.var_dir),
            "DEVSTACK_LOG_DIR": str(self.log_dir),
            "DEVSTACK_READY_TIMEOUT": "120",
            # One demo model for every stack of the session: trained by the first to start.
            "DEVSTACK_MODELS_DIR": str(SHARED_MODELS_DIR),
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

    def start(self, timeout_s: float = 300.0) -> "LaunchedStack":
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
        while "Press Ctrl-C to stop." not in self.output():
            if self.process.poll() is not None:
                raise RuntimeError(f"launcher exited {self.process.returncode}:\n{self.output()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"stack not up after {timeout_s}s:\n{self.output()}")
            time.sleep(0.3)
        return self

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
        shutil.rmtree(self.var_dir, ignore_errors=True)


def wait_for(check, timeout_s: float = 30.0, interval_s: float = 0.3):
    """Poll `check()` until it returns something truthy; return that, or the last value."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval_s)


def get(url: str, **kwargs) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=10, **kwargs)
    except httpx.TransportError:
        return None


# Rate limits high enough that no test is answered 429 by accident.
UNLIMITED = {
    "GATEWAY_RATE_LIMIT_PREDICTIONS": "100000/minute",
    "GATEWAY_RATE_LIMIT_LOGIN": "100000/minute",
    "GATEWAY_RATE_LIMIT_GENERAL": "100000/minute",
    "GATEWAY_RATE_LIMIT_ASSISTANT": "100000/minute",
}


@contextmanager
def running_stack(
    database_urls: dict[str, str], server_url: str, extra_env: dict[str, str] | None = None
) -> Iterator[LaunchedStack]:
    """A started stack, stopped (and its folder removed) when the block ends."""
    launched = LaunchedStack(database_urls, server_url, extra_env)
    try:
        yield launched.start()
    finally:
        launched.close()
