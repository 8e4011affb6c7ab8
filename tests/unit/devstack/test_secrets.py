"""`make run` makes the dev signing key, the service-token key pairs and the first admin's
password once and reuses them."""

from pathlib import Path

import pytest
from dotenv import dotenv_values

from common.service_tokens import load_private_key, load_public_key
from devstack.secrets import (
    admin_credentials_file,
    admin_refused_message,
    admin_settings,
    gateway_service_key_settings,
    signing_key_settings,
    slide_view_link_secret_settings,
    slide_worker_key_settings,
)


def test_a_first_admin_password_is_generated_once_and_kept(tmp_path):
    first = admin_settings({}, tmp_path)
    second = admin_settings({}, tmp_path)
    assert first == second
    assert first["AUTH_ADMIN_EMAIL"] == "admin@example.com"
    assert len(first["AUTH_ADMIN_PASSWORD"]) >= 20
    path = admin_credentials_file(tmp_path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert dotenv_values(path)["ADMIN_PASSWORD"] == first["AUTH_ADMIN_PASSWORD"]
    assert (
        admin_settings({}, tmp_path / "other")["AUTH_ADMIN_PASSWORD"]
        != first["AUTH_ADMIN_PASSWORD"]
    )


def test_configured_admin_credentials_are_left_alone(tmp_path):
    env = {"ADMIN_EMAIL": "ops@example.org", "ADMIN_PASSWORD": "set by the operator 1"}
    assert admin_settings(env, tmp_path) == {}
    assert not admin_credentials_file(tmp_path).exists()
    # Only an email configured: the file keeps it and adds a generated password.
    generated = admin_settings({"AUTH_ADMIN_EMAIL": "ops@example.org"}, tmp_path)
    assert generated["AUTH_ADMIN_EMAIL"] == "ops@example.org"


def test_a_signing_key_is_made_once_unless_one_is_configured(tmp_path):
    settings = signing_key_settings({}, tmp_path)
    assert settings == {"AUTH_KEYS_DIR": str(tmp_path / "keys")}
    keys = list((tmp_path / "keys").glob("*.pem"))
    assert len(keys) == 1
    signing_key_settings({}, tmp_path)
    assert list((tmp_path / "keys").glob("*.pem")) == keys
    assert signing_key_settings({"AUTH_SIGNING_KEY": "pem"}, tmp_path / "x") == {}
    assert not (tmp_path / "x").exists()


def test_the_gateway_service_key_pair_is_made_once_unless_both_sides_are_configured(tmp_path):
    settings = gateway_service_key_settings({}, tmp_path)
    private = Path(settings["GATEWAY_SERVICE_SIGNING_KEY_FILE"])
    public = Path(settings["DATA_GATEWAY_SERVICE_PUBLIC_KEY_FILE"])
    assert private.stat().st_mode & 0o777 == 0o600
    made = private.read_bytes()
    assert gateway_service_key_settings({}, tmp_path) == settings
    assert private.read_bytes() == made  # kept
    signer = load_private_key(path=private)
    assert signer is not None
    assert load_public_key(path=public) == signer.public_key()
    both = {
        "GATEWAY_SERVICE_SIGNING_KEY": "pem",
        "DATA_GATEWAY_SERVICE_PUBLIC_KEY_FILE": "/run/secrets/gateway.pem",
    }
    assert gateway_service_key_settings(both, tmp_path / "x") == {}
    assert not (tmp_path / "x").exists()
    # One side alone would leave the two keys unmatched: refused, saying so.
    with pytest.raises(ValueError, match="or neither"):
        gateway_service_key_settings({"GATEWAY_SERVICE_SIGNING_KEY": "pem"}, tmp_path / "y")


def test_the_slide_worker_key_pair_is_made_once_unless_both_sides_are_configured(tmp_path):
    settings = slide_worker_key_settings({}, tmp_path)
    private = Path(settings["SLIDE_WORKER_SIGNING_KEY_FILE"])
    public = Path(settings["INFERENCE_SLIDE_WORKER_PUBLIC_KEY_FILE"])
    assert (private, public) == (
        tmp_path / "slide-worker-keys" / "signing.pem",
        tmp_path / "slide-worker-keys" / "public.pem",
    )
    assert private.stat().st_mode & 0o777 == 0o600
    made = private.read_bytes()
    assert slide_worker_key_settings({}, tmp_path) == settings
    assert private.read_bytes() == made  # kept: the inference service goes on trusting it
    signer = load_private_key(path=private)
    assert signer is not None
    assert load_public_key(path=public) == signer.public_key()
    # A pair of its own, not the gateway's.
    gateway = gateway_service_key_settings({}, tmp_path)
    assert Path(gateway["GATEWAY_SERVICE_SIGNING_KEY_FILE"]).read_bytes() != made
    for both in (
        {
            "SLIDE_WORKER_SIGNING_KEY": "pem",
            "INFERENCE_SLIDE_WORKER_PUBLIC_KEY_FILE": "/run/secrets/worker.pem",
        },
        {
            "SLIDE_WORKER_SIGNING_KEY_FILE": "/run/secrets/worker-signing.pem",
            "INFERENCE_SLIDE_WORKER_PUBLIC_KEY": "pem",
        },
    ):
        assert slide_worker_key_settings(both, tmp_path / "x") == {}
    assert not (tmp_path / "x").exists()
    # One side alone would leave the two keys unmatched: refused, saying so.
    for one_side in (
        {"SLIDE_WORKER_SIGNING_KEY_FILE": "/run/secrets/worker-signing.pem"},
        {"INFERENCE_SLIDE_WORKER_PUBLIC_KEY": "pem"},
    ):
        with pytest.raises(ValueError, match="or neither"):
            slide_worker_key_settings(one_side, tmp_path / "y")
    assert not (tmp_path / "y").exists()


def test_the_slide_view_link_secret_is_made_once_unless_one_is_configured(tmp_path):
    settings = slide_view_link_secret_settings({}, tmp_path)
    path = Path(settings["SLIDE_VIEW_LINK_SECRET_FILE"])
    assert path.parent == tmp_path / "slide-keys"
    assert path.stat().st_mode & 0o777 == 0o600
    made = path.read_text()
    # The slide service refuses a production key shorter than 32 bytes.
    assert len(made.encode()) >= 32 and made == made.strip()
    assert slide_view_link_secret_settings({}, tmp_path) == settings
    assert path.read_text() == made  # kept: grants already handed out stay valid
    other = slide_view_link_secret_settings({}, tmp_path / "other")
    assert Path(other["SLIDE_VIEW_LINK_SECRET_FILE"]).read_text() != made  # random, not fixed
    for configured in (
        {"SLIDE_VIEW_LINK_SECRET": "k" * 32},
        {"SLIDE_VIEW_LINK_SECRET_FILE": "/run/secrets/slide-view-link"},
    ):
        assert slide_view_link_secret_settings(configured, tmp_path / "x") == {}
    assert not (tmp_path / "x").exists()


def test_the_refusal_names_the_file_and_database_and_not_the_password(tmp_path):
    message = admin_refused_message(
        admin_credentials_file(tmp_path), "postgresql+asyncpg://u:secret@db:5432/auth"
    )
    assert "(auth) already had an admin" in message
    assert str(admin_credentials_file(tmp_path)) in message
    assert "secret" not in message
