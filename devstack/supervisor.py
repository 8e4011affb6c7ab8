"""supervisord, configured for the dev stack: one program per component, one control socket."""

import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import xmlrpc.client
from pathlib import Path

from supervisor.xmlrpc import SupervisorTransport

from devstack import ROOT, prometheus
from devstack.stack import COMPONENTS, Stack

# A unix socket path may not exceed 107 bytes; deep temporary folders would.
_MAX_SOCKET_PATH = 100


def _socket_path(run_dir: Path) -> Path:
    path = run_dir / "supervisor.sock"
    if len(str(path)) <= _MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha256(str(run_dir).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"devstack-{digest}.sock"


def _program(name: str, command: str, priority: int, log_target: str) -> str:
    return f"""
[program:{name}]
command={command}
directory={ROOT}
priority={priority}
autostart=true
autorestart=true
startsecs=3
startretries=3
stopsignal=TERM
stopwaitsecs=15
stopasgroup=true
killasgroup=true
redirect_stderr=true
stdout_logfile={log_target}
stdout_logfile_maxbytes=0
"""


class Supervisor:
    def __init__(
        self, stack: Stack, log_dir: Path | None = None, prometheus_binary: str | None = None
    ) -> None:
        """With `log_dir`, each program logs to `<log_dir>/<name>.log`; else to our stdout.
        With `prometheus_binary`, Prometheus runs too, scraping the services."""
        self.stack = stack
        self.prometheus_binary = prometheus_binary
        self.run_dir = stack.var_dir / "run"
        self.config_path = self.run_dir / "supervisord.conf"
        self.pid_file = self.run_dir / "supervisord.pid"
        self.socket = _socket_path(self.run_dir)
        self.log_dir = log_dir
        self.process: subprocess.Popen[bytes] | None = None

    def log_file(self, name: str) -> Path | None:
        return self.log_dir / f"{name}.log" if self.log_dir else None

    def write_config(self) -> Path:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.log_dir:
            self.log_dir.mkdir(parents=True, exist_ok=True)
        # supervisord starts low priorities first and stops them last: the services behind the
        # gateway come up before it and go down after it.
        commands = {c.name: f"{sys.executable} -m {c.module}" for c in COMPONENTS}
        if self.prometheus_binary:
            # Last up, first down: it watches the others.
            config = prometheus.write_config(self.stack, self.run_dir)
            commands["prometheus"] = prometheus.command(self.prometheus_binary, config, self.stack)
        programs = "".join(
            _program(name, command, 10 * (i + 1), str(self.log_file(name) or "/dev/stdout"))
            for i, (name, command) in enumerate(commands.items())
        )
        self.config_path.write_text(
            f"""[supervisord]
nodaemon=true
logfile={self.run_dir / "supervisord.log"}
logfile_maxbytes=5MB
pidfile={self.pid_file}
loglevel=warn

[unix_http_server]
file={self.socket}
chmod=0700

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{self.socket}
{programs}"""
        )
        return self.config_path

    def running_pid(self) -> int | None:
        """The pid of a supervisord already serving this stack, if one is alive."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        return pid

    def start(self) -> subprocess.Popen[bytes]:
        self.write_config()
        # Its own session: a Ctrl-C in the terminal reaches the launcher only, which then stops
        # supervisord, which stops the programs in order.
        self.process = subprocess.Popen(
            [sys.executable, "-m", "supervisor.supervisord", "-c", str(self.config_path)],
            env=self.stack.service_env,
            cwd=ROOT,
            start_new_session=True,
        )
        return self.process

    def ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "supervisor.supervisorctl", "-c", str(self.config_path), *args],
            capture_output=True,
            text=True,
            env=self.stack.env,
            timeout=60,
            check=False,
        )

    def process_info(self) -> list[dict]:
        """supervisord's record of each program (name, statename, pid, start, exitstatus),
        over its XML-RPC socket; empty while supervisord is not answering yet."""
        transport = SupervisorTransport(None, None, f"unix://{self.socket}")
        proxy = xmlrpc.client.ServerProxy("http://localhost", transport=transport)
        try:
            return proxy.supervisor.getAllProcessInfo()
        except (OSError, xmlrpc.client.Error):
            return []

    def log_tail(self, name: str, lines: int = 20) -> str:
        """The last lines a program wrote, when it logs to a file."""
        path = self.log_file(name)
        if path is None or not path.is_file():
            return ""
        with path.open("rb") as file:
            file.seek(max(0, path.stat().st_size - 64 * 1024))
            text = file.read().decode(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout_s: float = 60.0) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait()
