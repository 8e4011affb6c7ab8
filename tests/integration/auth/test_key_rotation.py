"""Signing keys: rotation keeps tokens of the previous key valid until they expire."""

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auth_service.tokens.keys import (
    Keyring,
    KeyringError,
    SigningKey,
    create_key_file,
    thumbprint,
)
from devstack import ROOT
from tests.support.auth import running_auth


async def test_tokens_of_the_previous_key_stay_valid_after_a_rotation(auth_database_url, tmp_path):
    keys = tmp_path / "keys"
    create_key_file(keys, datetime.now(UTC) - timedelta(days=1))
    async with running_auth(auth_database_url, keys_dir=keys) as auth:
        before = await auth.tokens()
    old_kid = jwt.get_unverified_header(before["access_token"])["kid"]

    create_key_file(keys)  # rotate: the new key signs from now on
    async with running_auth(auth_database_url, keys_dir=keys) as auth:
        jwks = (await auth.client.get("/.well-known/jwks.json")).json()
        after = await auth.tokens()
        new_kid = jwt.get_unverified_header(after["access_token"])["kid"]
        assert new_kid != old_kid
        assert [key["kid"] for key in jwks["keys"]] == [new_kid, old_kid]  # newest first
        old_bearer = {"Authorization": f"Bearer {before['access_token']}"}
        assert (await auth.client.get("/me", headers=old_bearer)).status_code == 200
        refreshed = await auth.client.post(
            "/refresh", json={"refresh_token": before["refresh_token"]}
        )
        assert refreshed.status_code == 200
        assert jwt.get_unverified_header(refreshed.json()["access_token"])["kid"] == new_kid


async def test_a_key_retired_longer_than_any_token_lives_is_dropped(auth_database_url, tmp_path):
    keys = tmp_path / "keys"
    long_ago = datetime.now(UTC) - timedelta(days=30)
    old_file = create_key_file(keys, long_ago)
    create_key_file(keys, long_ago + timedelta(days=1))  # retired the old one 29 days ago
    old_key = serialization.load_pem_private_key(old_file.read_bytes(), password=None)
    async with running_auth(auth_database_url, keys_dir=keys) as auth:
        jwks = (await auth.client.get("/.well-known/jwks.json")).json()
        assert len(jwks["keys"]) == 1
        claims = jwt.decode(
            (await auth.tokens())["access_token"], options={"verify_signature": False}
        )
        kid_of_old = Keyring.from_directory(keys, timedelta(days=365)).valid_keys()[0].kid
        forged = jwt.encode(claims, old_key, algorithm="EdDSA", headers={"kid": kid_of_old})
        response = await auth.client.get("/me", headers={"Authorization": f"Bearer {forged}"})
        assert response.status_code == 401
        assert "unknown key" in response.json()["error"]["message"]


def test_keyring_validity_window():
    now = datetime(2026, 1, 10, tzinfo=UTC)
    lifetime = timedelta(days=7)
    folder_keys = []
    for created in (now - timedelta(days=20), now - timedelta(days=5), now - timedelta(days=1)):
        key = Ed25519PrivateKey.generate()
        folder_keys.append((created, key))
    signing_keys = [
        SigningKey(
            thumbprint(k.public_key()),
            k,
            created,
            folder_keys[i + 1][0] if i + 1 < len(folder_keys) else None,
        )
        for i, (created, k) in enumerate(folder_keys)
    ]
    keyring = Keyring(signing_keys, lifetime)
    valid = keyring.valid_keys(now)
    # The first was retired 5 days ago (< 7): still valid; none dropped yet.
    assert [k.created_at for k in valid] == [c for c, _ in folder_keys]
    later = keyring.valid_keys(now + timedelta(days=3))  # first retired 8 days before
    assert [k.created_at for k in later] == [c for c, _ in folder_keys[1:]]
    assert keyring.current.created_at == folder_keys[-1][0]


def test_the_key_cli_creates_once_and_rotates(tmp_path):
    keys = tmp_path / "keys"

    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "auth_service.tokens.keys", *args, "--dir", str(keys)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    assert "created" in run("ensure")
    assert "already has a signing key" in run("ensure")
    [first] = list(keys.glob("*.pem"))
    assert first.stat().st_mode & 0o777 == 0o600
    time.sleep(1.1)  # key files are named by the second
    assert "created" in run("rotate")
    assert len(list(keys.glob("*.pem"))) == 2


def test_a_missing_or_wrong_key_stops_the_service_at_start(tmp_path):
    with pytest.raises(KeyringError, match="no signing key"):
        Keyring.from_directory(tmp_path, timedelta(days=7))
    (tmp_path / "20260101T000000Z.pem").write_text("not a key")
    with pytest.raises(KeyringError, match="not an unencrypted PEM private key"):
        Keyring.from_directory(tmp_path, timedelta(days=7))
    encrypted_key = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    (tmp_path / "20260101T000000Z.pem").write_bytes(encrypted_key)
    with pytest.raises(KeyringError):
        Keyring.from_directory(tmp_path, timedelta(days=7))


async def test_a_key_from_the_environment_signs_tokens(auth_database_url):
    pem = (
        Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    async with running_auth(auth_database_url, signing_key=pem, keys_dir=None) as auth:
        jwks = (await auth.client.get("/.well-known/jwks.json")).json()
        token = (await auth.tokens())["access_token"]
    assert jwt.get_unverified_header(token)["kid"] == jwks["keys"][0]["kid"]
