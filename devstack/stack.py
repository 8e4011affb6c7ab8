"""What runs in the dev stack, and the environment each process gets."""

import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from dotenv import dotenv_values
from sqlalchemy.engine import make_url

from devstack import ROOT
from devstack.postgres import runtime_login_name, with_database


@dataclass(frozen=True)
class Component:
    name: str  # the supervisord program name, and how people call it
    module: str  # `python -m <module>` serves it
    env_prefix: str
    default_port: int
    database: str | None = None  # its own database, migrated before it starts


COMPONENTS = (
    Component("auth", "auth_service", "AUTH_", 8000, "auth"),
    Component("inference", "inference_service", "INFERENCE_", 8001, "inference"),
    Component("data", "data_service", "DATA_", 8002, "data"),
    Component("slides", "slide_service", "SLIDE_", 8003, "slides"),
    # The slide-analysis worker: the slide service's settings (and database); its own port is
    # the one its metrics are served on, SLIDE_WORKER_METRICS_PORT.
    Component("slide-worker", "slide_service.worker", "SLIDE_WORKER_METRICS_", 9103),
    Component("gateway", "gateway", "GATEWAY_", 8004),
    Component("frontend", "frontend", "FRONTEND_", 8501),
)
BY_NAME = {component.name: component for component in COMPONENTS}
# The services the gateway calls -> the gateway's setting for its URL.
GATEWAY_DOWNSTREAMS = {
    "auth": "GATEWAY_AUTH_URL",
    "inference": "GATEWAY_INFERENCE_URL",
    "data": "GATEWAY_DATA_URL",
    "slides": "GATEWAY_SLIDE_URL",
}
# Optional, beside the components: runs when its binary is found (devstack.prometheus).
PROMETHEUS_DEFAULT_PORT = 9090


def configured_environment(root: Path = ROOT) -> dict[str, str]:
    """The process environment over the project's `.env` file (the environment wins)."""
    from_file = {k: v for k, v in dotenv_values(root / ".env").items() if v is not None}
    return {**from_file, **os.environ}


@dataclass(frozen=True)
class RuntimeLogin:
    """A login a service runs as, to be made on the server before the migrations grant it."""

    role: str
    password: str
    admin_url: str  # the migration login, allowed to create it


@dataclass(frozen=True)
class Stack:
    env: dict[str, str]  # what every child process gets
    var_dir: Path
    runtime_logins: tuple[RuntimeLogin, ...] = ()

    @property
    def service_env(self) -> dict[str, str]:
        """What the services get: all but the migration logins, which only `migrate` uses."""
        return {k: v for k, v in self.env.items() if not k.endswith("_MIGRATION_DATABASE_URL")}

    def port(self, name: str) -> int:
        if name == "prometheus":
            return int(self.env["DEVSTACK_PROMETHEUS_PORT"])
        component = BY_NAME[name]
        return int(self.env[f"{component.env_prefix}PORT"])

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port(name)}"

    @property
    def prometheus_binary(self) -> str | None:
        """`DEVSTACK_PROMETHEUS` (a path or a name on PATH), else `prometheus` on PATH."""
        return shutil.which(
            self.env.get("DEVSTACK_PROMETHEUS") or "prometheus", path=self.env.get("PATH")
        )


def separate_runtime_login(
    env: dict[str, str], component: Component, server_url: str
) -> RuntimeLogin | None:
    """Run the component as a login of its own, apart from the one that migrates (the
    configured `<PREFIX>DATABASE_URL`, else the server's): the server's login is usually a
    superuser, who bypasses every privilege, and an owner could alter its tables. Left alone
    when both URLs are configured: then whoever set them made the logins."""
    runtime_key = f"{component.env_prefix}DATABASE_URL"
    migration_key = f"{component.env_prefix}MIGRATION_DATABASE_URL"
    if env.get(runtime_key) and env.get(migration_key):
        return None
    owner_url = (
        env.get(migration_key)
        or env.get(runtime_key)
        or with_database(server_url, component.database or "")
    )
    role = runtime_login_name(owner_url)
    password = secrets.token_hex(16)  # made anew at each start, as is the login's password
    env[migration_key] = owner_url
    env[runtime_key] = (
        make_url(owner_url)
        .set(username=role, password=password)
        .render_as_string(hide_password=False)
    )
    return RuntimeLogin(role, password, owner_url)


def build_stack(configured: dict[str, str], server_url: str, var_dir: Path) -> Stack:
    """Fill in every setting the user left unset: ports, database URLs and logins, service
    URLs."""
    env = dict(configured)

    def default(key: str, value: str) -> None:
        if not env.get(key):
            env[key] = value

    runtime_logins = []
    for component in COMPONENTS:
        default(f"{component.env_prefix}PORT", str(component.default_port))
        if component.database and (login := separate_runtime_login(env, component, server_url)):
            runtime_logins.append(login)
    for name, setting in GATEWAY_DOWNSTREAMS.items():
        default(setting, f"http://127.0.0.1:{env[f'{BY_NAME[name].env_prefix}PORT']}")
    default("DEVSTACK_PROMETHEUS_PORT", str(PROMETHEUS_DEFAULT_PORT))
    default("FRONTEND_GATEWAY_URL", f"http://127.0.0.1:{env['GATEWAY_PORT']}")
    default("DATA_STORAGE_DIR", str(var_dir / "data" / "images"))
    default("SLIDE_STORAGE_DIR", str(var_dir / "slides"))
    default("DEVSTACK_MODELS_DIR", str(var_dir / "models"))
    default("INFERENCE_MODELS_DIR", env["DEVSTACK_MODELS_DIR"])
    # Load the model before serving, as compose does: the first prediction after a start (or
    # a restart) is then as fast as the others, and readiness means ready to predict.
    default("INFERENCE_WARM_UP", "true")
    # The demo model's training run is tracked beside the stack's other state.
    default("MLFLOW_TRACKING_URI", f"sqlite:///{var_dir / 'mlflow' / 'mlflow.db'}")
    default("INFERENCE_AUTH_URL", env["GATEWAY_AUTH_URL"])
    default("DATA_AUTH_URL", env["GATEWAY_AUTH_URL"])
    default("SLIDE_AUTH_URL", env["GATEWAY_AUTH_URL"])
    default("SLIDE_INFERENCE_URL", env["GATEWAY_INFERENCE_URL"])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return Stack(env=env, var_dir=var_dir, runtime_logins=tuple(runtime_logins))
