"""`python -m devstack run`: what `make run` does. See the package docstring."""

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import httpx

from devstack import ROOT
from devstack.launcher import BANNER_LAST_LINE, ready_file
from devstack.postgres import PrivatePostgres, ensure_login, port_is_free, resolve_server
from devstack.secrets import (
    admin_credentials_file,
    admin_credentials_refused,
    admin_refused_message,
    admin_settings,
    gateway_service_key_settings,
    signing_key_settings,
    slide_view_link_secret_settings,
    slide_worker_key_settings,
)
from devstack.stack import (
    COMPONENTS,
    GATEWAY_DOWNSTREAMS,
    Stack,
    build_stack,
    configured_environment,
)
from devstack.supervisor import Supervisor
from ml.versions import list_versions


class Interrupted(Exception):
    pass


def _raise_interrupted(signum: int, _frame: object) -> None:
    raise Interrupted(signal.Signals(signum).name)


def say(message: str) -> None:
    print(f"[devstack] {message}", flush=True)


def make_runtime_logins(stack: Stack) -> None:
    """The services' own logins, before the migrations grant them their privileges."""
    for login in stack.runtime_logins:
        ensure_login(login.admin_url, login.role, login.password)


def migrate(stack: Stack) -> None:
    """Migrate every service's database, side by side: they are separate databases, and each
    migration spends most of its time importing its tools."""
    with_database = [c for c in COMPONENTS if c.database]
    say(f"migrating the databases of {', '.join(c.name for c in with_database)}")
    commands = [[sys.executable, "-m", f"{c.module}.migrate", "upgrade"] for c in with_database]
    running = [subprocess.Popen(command, env=stack.env, cwd=ROOT) for command in commands]
    codes = [process.wait() for process in running]
    for command, code in zip(commands, codes, strict=True):
        if code != 0:
            raise subprocess.CalledProcessError(code, command)


def bootstrap_model(stack: Stack) -> None:
    """Provide the demonstration model when no model version exists: the shipped one, or,
    when that cannot be used, one trained from synthetic data (it tells each step)."""
    models_dir = Path(stack.env["DEVSTACK_MODELS_DIR"])
    if list_versions(models_dir):
        return
    say(f"no model version in {models_dir} yet: providing the demo model")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "ml.bootstrap",
            "--models-dir",
            str(models_dir),
            "--data",
            str(stack.var_dir / "datasets" / "synthetic"),
        ],
        env=stack.env,
        cwd=ROOT,
        check=True,
    )


def prometheus_binary(stack: Stack) -> str | None:
    """The Prometheus to run beside the services; None, said why, when there is none."""
    binary = stack.prometheus_binary
    port = stack.port("prometheus")
    if binary is None:
        wanted = stack.env.get("DEVSTACK_PROMETHEUS") or "prometheus"
        say(f"{wanted} not found (install it, or name it in DEVSTACK_PROMETHEUS): no metrics UI")
    elif not port_is_free(port):
        say(f"port {port} is taken (DEVSTACK_PROMETHEUS_PORT): running without Prometheus")
        binary = None
    return binary


# A program supervisord gave up on (FATAL: it exited too quickly, `startretries` times) will
# not come up by waiting longer; nor will one that keeps exiting after a slow start
# (supervisord counts those as started, and restarts them for ever): MAX_STARTS tells it.
MAX_STARTS = 3


def wait_until_ready(stack: Stack, supervisor: Supervisor, timeout_s: float) -> bool:
    """Wait for the gateway's and the frontend's readiness (and Prometheus'), until the
    deadline or until a program has failed for good; on failure, say which and show its last
    log lines."""
    checks = {
        "gateway": f"{stack.url('gateway')}/ready",
        "frontend": f"{stack.url('frontend')}/_stcore/health",
    }
    if supervisor.prometheus_binary:
        checks["prometheus"] = f"{stack.url('prometheus')}/-/ready"
    deadline = time.monotonic() + timeout_s
    starts: dict[str, set[int]] = {}
    pending: dict[str, str] = {}
    with httpx.Client(timeout=5.0) as client:
        while time.monotonic() < deadline:
            if supervisor.process is not None and supervisor.process.poll() is not None:
                say("supervisord exited before the stack was ready")
                return False
            failed = {}
            for info in supervisor.process_info():
                seen = starts.setdefault(info["name"], set())
                seen.add(info["start"])
                if info["statename"] == "FATAL":
                    failed[info["name"]] = info["statename"]
                elif len(seen) >= MAX_STARTS:
                    failed[info["name"]] = f"started {len(seen)} times"
            if failed:
                report_not_ready(supervisor, failed, "failed to start")
                return False
            pending = {}
            for name, url in checks.items():
                try:
                    response = client.get(url)
                    if response.status_code == 200:
                        continue
                    pending[name] = f"{response.status_code} {response.text[:300]}"
                except httpx.TransportError as exc:
                    pending[name] = type(exc).__name__
            if not pending:
                return True
            time.sleep(0.5)
    say(f"not ready after {timeout_s:.0f}s (DEVSTACK_READY_TIMEOUT): waiting for {pending}")
    stuck = {
        info["name"]: info["statename"]
        for info in supervisor.process_info()
        if info["statename"] != "RUNNING" or info["name"] in pending
    }
    report_not_ready(supervisor, stuck, "not ready")
    return False


def report_not_ready(supervisor: Supervisor, programs: dict[str, str], what: str) -> None:
    for name, state in programs.items():
        say(f"{name} {what} ({state}); its last log lines:")
        print(supervisor.log_tail(name) or "  (it logs to this terminal: see above)", flush=True)


def print_urls(stack: Stack, prometheus: bool, admin_works: bool = True) -> None:
    gateway = stack.url("gateway")
    credentials = admin_credentials_file(stack.var_dir)
    lines = [
        "",
        "Cancer Detection System is running:",
        f"  Frontend        {stack.url('frontend')}",
        f"  API (gateway)   {gateway}/api/v1   docs: {gateway}/docs",
        f"  Readiness       {gateway}/ready",
        *(f"  {name:<15} {stack.url(name)}   (internal)" for name in GATEWAY_DOWNSTREAMS),
        *([f"  Prometheus      {stack.url('prometheus')}"] if prometheus else []),
        *([f"  Admin login     in {credentials}"] if credentials.exists() and admin_works else []),
        BANNER_LAST_LINE,
        "",
    ]
    print("\n".join(lines), flush=True)


def write_ready(stack: Stack, prometheus: bool) -> None:
    """The banner's facts for programs (devstack.launcher waits on this file)."""
    names = [c.name for c in COMPONENTS] + (["prometheus"] if prometheus else [])
    ready = {"launcher_pid": os.getpid(), "urls": {name: stack.url(name) for name in names}}
    ready_file(stack.var_dir).write_text(json.dumps(ready, indent=2))


def run(args: argparse.Namespace) -> int:
    configured = configured_environment()
    var_dir = Path(configured.get("DEVSTACK_VAR_DIR") or ROOT / "var").resolve()
    log_dir = Path(configured["DEVSTACK_LOG_DIR"]) if configured.get("DEVSTACK_LOG_DIR") else None
    ready_timeout_s = float(configured.get("DEVSTACK_READY_TIMEOUT", "120"))
    signal.signal(signal.SIGINT, _raise_interrupted)
    signal.signal(signal.SIGTERM, _raise_interrupted)

    private: PrivatePostgres | None = None
    supervisor: Supervisor | None = None
    try:
        server_url, private = resolve_server(configured, var_dir)
        stack = build_stack(configured, server_url, var_dir)
        stack.env.update(signing_key_settings(stack.env, var_dir))
        stack.env.update(gateway_service_key_settings(stack.env, var_dir))
        stack.env.update(slide_worker_key_settings(stack.env, var_dir))
        stack.env.update(slide_view_link_secret_settings(stack.env, var_dir))
        generated_admin = admin_settings(stack.env, var_dir)
        stack.env.update(generated_admin)
        supervisor = Supervisor(stack, log_dir)
        if (pid := supervisor.running_pid()) is not None:
            say(f"already running (supervisord pid {pid}); stop it with Ctrl-C in its terminal")
            print_urls(stack, prometheus=stack.prometheus_binary is not None)
            supervisor = None
            private = None  # it belongs to the running instance
            return 0
        ready_file(var_dir).unlink(missing_ok=True)  # left by a run that was killed
        say(f"PostgreSQL: {'private server, ' if private else ''}{_safe(server_url)}")
        try:
            make_runtime_logins(stack)
        except asyncpg.PostgresError as exc:
            say(
                f"cannot make the services' database logins ({exc}): give the migration login "
                "CREATEROLE, or set each <SERVICE>_DATABASE_URL and "
                "<SERVICE>_MIGRATION_DATABASE_URL to logins you made"
            )
            return 1
        migrate(stack)
        bootstrap_model(stack)
        supervisor.prometheus_binary = prometheus_binary(stack)
        say("starting services under supervisord")
        supervisor.start()
        if not wait_until_ready(stack, supervisor, ready_timeout_s):
            return 1
        auth_database = stack.env["AUTH_DATABASE_URL"]
        admin_works = not (
            generated_admin
            and asyncio.run(admin_credentials_refused(auth_database, generated_admin))
        )
        if not admin_works:
            say(admin_refused_message(admin_credentials_file(var_dir), auth_database))
        print_urls(stack, supervisor.prometheus_binary is not None, admin_works)
        write_ready(stack, supervisor.prometheus_binary is not None)
        return supervisor.process.wait() if supervisor.process else 1
    except Interrupted as reason:
        say(f"{reason}: stopping")
        return 0
    except subprocess.CalledProcessError as exc:
        say(f"failed: {' '.join(map(str, exc.cmd))} exited with {exc.returncode}")
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if supervisor is not None:
            ready_file(var_dir).unlink(missing_ok=True)
            supervisor.stop()
        if private is not None:
            private.stop()
        say("stopped")


def _safe(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="start PostgreSQL, migrations, services and frontend")
    args = parser.parse_args(argv)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
