"""What runs in the dev stack, and the environment each process gets."""

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from dotenv import dotenv_values

from devstack import ROOT
from devstack.postgres import with_database


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
    Component("gateway", "gateway", "GATEWAY_", 8004),
    Component("frontend", "frontend", "FRONTEND_", 8501),
)
BY_NAME = {component.name: component for component in COMPONENTS}
# Optional, beside the components: runs when its binary is found (devstack.prometheus).
PROMETHEUS_DEFAULT_PORT = 9090


def configured_environment(root: Path = ROOT) -> dict[str, str]:
    """The process environment over the project's `.env` file (the environment wins)."""
    from_file = {k: v for k, v in dotenv_values(root / ".env").items() if v is not None}
    return {**from_file, **os.environ}


@dataclass(frozen=True)
class Stack:
    env: dict[str, str]  # what every child process gets
    var_dir: Path

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


def build_stack(configured: dict[str, str], server_url: str, var_dir: Path) -> Stack:
    """Fill in every setting the user left unset: ports, database URLs, service URLs."""
    env = dict(configured)

    def default(key: str, value: str) -> None:
        if not env.get(key):
            env[key] = value

    for component in COMPONENTS:
        default(f"{component.env_prefix}PORT", str(component.default_port))
        if component.database:
            default(
                f"{component.env_prefix}DATABASE_URL",
                with_database(server_url, component.database),
            )
    for name in ("auth", "inference", "data"):
        default(
            f"GATEWAY_{name.upper()}_URL",
            f"http://127.0.0.1:{env[f'{BY_NAME[name].env_prefix}PORT']}",
        )
    default("DEVSTACK_PROMETHEUS_PORT", str(PROMETHEUS_DEFAULT_PORT))
    default("FRONTEND_GATEWAY_URL", f"http://127.0.0.1:{env['GATEWAY_PORT']}")
    default("DATA_STORAGE_DIR", str(var_dir / "data" / "images"))
    default("DEVSTACK_MODELS_DIR", str(var_dir / "models"))
    default("INFERENCE_MODELS_DIR", env["DEVSTACK_MODELS_DIR"])
    # Load the model before serving, as compose does: the first prediction after a start (or
    # a restart) is then as fast as the others, and readiness means ready to predict.
    default("INFERENCE_WARM_UP", "true")
    # The demo model's training run is tracked beside the stack's other state.
    default("MLFLOW_TRACKING_URI", f"sqlite:///{var_dir / 'mlflow' / 'mlflow.db'}")
    default("INFERENCE_AUTH_URL", env["GATEWAY_AUTH_URL"])
    default("DATA_AUTH_URL", env["GATEWAY_AUTH_URL"])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return Stack(env=env, var_dir=var_dir)
