"""Secrets a developer machine needs and nobody should have to invent: the auth service's
signing key, the gateway's and the slide-analysis workers' service-token key pairs, the slide
service's view-link key and the first admin's password. Made once under the var folder
(git-ignored), readable by their owner only, and reused by every later run."""

import os
import secrets
from pathlib import Path

import asyncpg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from dotenv import dotenv_values

from auth_service.tokens.keys import ensure_key_file
from common.service_tokens import ensure_key_pair
from devstack.postgres import connect

DEV_ADMIN_EMAIL = "admin@example.com"


def signing_key_settings(env: dict[str, str], var_dir: Path) -> dict[str, str]:
    """AUTH_KEYS_DIR with a key in it, unless a key or folder is configured already."""
    if env.get("AUTH_SIGNING_KEY"):
        return {}
    keys_dir = Path(env.get("AUTH_KEYS_DIR") or var_dir / "keys")
    ensure_key_file(keys_dir)
    return {"AUTH_KEYS_DIR": str(keys_dir)}


def gateway_service_key_settings(env: dict[str, str], var_dir: Path) -> dict[str, str]:
    """The gateway's service-token key pair (the gateway signs, the data service checks),
    made once under var/gateway-keys, unless both sides are configured already."""
    gateway_side = env.get("GATEWAY_SERVICE_SIGNING_KEY") or env.get(
        "GATEWAY_SERVICE_SIGNING_KEY_FILE"
    )
    data_side = env.get("DATA_GATEWAY_SERVICE_PUBLIC_KEY") or env.get(
        "DATA_GATEWAY_SERVICE_PUBLIC_KEY_FILE"
    )
    if gateway_side and data_side:
        return {}
    if gateway_side or data_side:
        raise ValueError(
            "configure both GATEWAY_SERVICE_SIGNING_KEY(_FILE) and "
            "DATA_GATEWAY_SERVICE_PUBLIC_KEY(_FILE), or neither (make run then makes the pair)"
        )
    folder = var_dir / "gateway-keys"
    private, public = folder / "service-signing.pem", folder / "service-public.pem"
    ensure_key_pair(private, public)
    return {
        "GATEWAY_SERVICE_SIGNING_KEY_FILE": str(private),
        "DATA_GATEWAY_SERVICE_PUBLIC_KEY_FILE": str(public),
    }


def slide_worker_key_settings(env: dict[str, str], var_dir: Path) -> dict[str, str]:
    """The slide-analysis workers' service-token key pair (the worker signs its patch
    batches, the inference service checks them), made once under var/slide-worker-keys,
    unless both sides are configured already."""
    worker_side = env.get("SLIDE_WORKER_SIGNING_KEY") or env.get("SLIDE_WORKER_SIGNING_KEY_FILE")
    inference_side = env.get("INFERENCE_SLIDE_WORKER_PUBLIC_KEY") or env.get(
        "INFERENCE_SLIDE_WORKER_PUBLIC_KEY_FILE"
    )
    if worker_side and inference_side:
        return {}
    if worker_side or inference_side:
        raise ValueError(
            "configure both SLIDE_WORKER_SIGNING_KEY(_FILE) and "
            "INFERENCE_SLIDE_WORKER_PUBLIC_KEY(_FILE), or neither (make run then makes the pair)"
        )
    folder = var_dir / "slide-worker-keys"
    private, public = folder / "signing.pem", folder / "public.pem"
    ensure_key_pair(private, public)
    return {
        "SLIDE_WORKER_SIGNING_KEY_FILE": str(private),
        "INFERENCE_SLIDE_WORKER_PUBLIC_KEY_FILE": str(public),
    }


def _write_private(path: Path, text: str) -> None:
    """A new file only its owner reads (refused with FileExistsError if it exists)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)


def slide_view_link_secret_settings(env: dict[str, str], var_dir: Path) -> dict[str, str]:
    """The HS256 key that signs slide view grants, made once under var/slide-keys, unless
    one is configured. The slide service refuses the built-in development key in
    production, so the stack makes a real one as it does the other keys."""
    if env.get("SLIDE_VIEW_LINK_SECRET") or env.get("SLIDE_VIEW_LINK_SECRET_FILE"):
        return {}
    path = var_dir / "slide-keys" / "view-link.secret"
    if not path.exists():
        _write_private(path, secrets.token_urlsafe(48))  # 64 characters, above the 32 required
    return {"SLIDE_VIEW_LINK_SECRET_FILE": str(path)}


def admin_credentials_file(var_dir: Path) -> Path:
    return var_dir / "admin-credentials.env"


def admin_settings(env: dict[str, str], var_dir: Path) -> dict[str, str]:
    """The first admin's email and password: as configured, else from (or into) the
    credentials file under `var_dir`."""
    email = env.get("AUTH_ADMIN_EMAIL") or env.get("ADMIN_EMAIL")
    password = env.get("AUTH_ADMIN_PASSWORD") or env.get("ADMIN_PASSWORD")
    if email and password:
        return {}
    path = admin_credentials_file(var_dir)
    if not path.exists():
        _write_private(
            path,
            "# The first admin of this development stack, made by the first `make run`.\n"
            f"ADMIN_EMAIL={email or DEV_ADMIN_EMAIL}\n"
            f"ADMIN_PASSWORD={password or secrets.token_urlsafe(18)}\n",
        )
    stored = dotenv_values(path)
    return {
        "AUTH_ADMIN_EMAIL": str(stored["ADMIN_EMAIL"]),
        "AUTH_ADMIN_PASSWORD": str(stored["ADMIN_PASSWORD"]),
    }


async def admin_credentials_refused(auth_database_url: str, settings: dict[str, str]) -> bool:
    """Whether the auth database will refuse the credentials file's admin. The auth service
    creates the first admin only while no active admin exists, so a database kept from
    another checkout (or an earlier credentials file) keeps that run's admin. Read from the
    database rather than by logging in, which would count as a failed login against the
    admin and the address; no verdict while the account is still to be created."""
    try:
        connection = await connect(auth_database_url)
    except (OSError, TimeoutError, asyncpg.PostgresError):
        return False  # the services reached it a moment ago; no verdict without it
    try:
        stored = await connection.fetchval(
            "SELECT password_hash FROM users WHERE lower(email) = lower($1)",
            settings["AUTH_ADMIN_EMAIL"],
        )
        other_admin = await connection.fetchval(
            "SELECT EXISTS (SELECT 1 FROM users WHERE role = 'admin' AND is_active)"
        )
    finally:
        await connection.close()
    if stored is None:
        return bool(other_admin)  # the service will not create this one
    try:
        PasswordHasher().verify(stored, settings["AUTH_ADMIN_PASSWORD"])  # parameters in the hash
    except (VerificationError, InvalidHashError):
        return True
    return False


def admin_refused_message(credentials: Path, database_url: str) -> str:
    database = database_url.rsplit("/", 1)[-1].split("?")[0]
    return (
        f"the admin password in {credentials} does not open this stack: its auth database "
        f"({database}) already had an admin, made by an earlier run with another credentials "
        "file. Log in with that run's password, or set ADMIN_EMAIL and ADMIN_PASSWORD to it, "
        "or give this checkout databases of its own (DATABASE_URL)."
    )
