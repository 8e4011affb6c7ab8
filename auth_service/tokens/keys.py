"""The auth service's signing keys: Ed25519, kept in PEM files, published as a JWKS.

A keys folder holds one private key per file, named by its creation time
(`20261124T140000Z.pem`). The newest signs new tokens. An older key was retired when the
next one was made; it stays published, and accepted, until every token it signed has expired
(retired + the longest token lifetime), then drops out. Rotating is adding a newer file:

    python -m auth_service.tokens.keys rotate --dir var/keys
"""

import argparse
import base64
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from jwt.algorithms import OKPAlgorithm

from common.keyfiles import write_new_private_key

ALGORITHM = "EdDSA"
_KEY_FILE = re.compile(r"^(\d{8}T\d{6}Z)\.pem$")
_TIME_FORMAT = "%Y%m%dT%H%M%SZ"


class KeyringError(RuntimeError):
    """No usable signing key: the service cannot issue tokens and refuses to start."""


def thumbprint(public_key: Ed25519PublicKey) -> str:
    """RFC 7638 JWK thumbprint, used as the key id (`kid`)."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    canonical = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": x}, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_key: Ed25519PrivateKey
    created_at: datetime
    retired_at: datetime | None = None  # when a newer key took over signing

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    def jwk(self) -> dict[str, str]:
        jwk = OKPAlgorithm.to_jwk(self.public_key, as_dict=True)
        return {**jwk, "kid": self.kid, "alg": ALGORITHM, "use": "sig"}


def _load_private_key(pem: bytes, origin: str) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyringError(f"{origin} is not an unencrypted PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyringError(f"{origin} is not an Ed25519 key")
    return key


class Keyring:
    def __init__(self, keys: list[SigningKey], max_token_lifetime: timedelta) -> None:
        if not keys:
            raise KeyringError("no signing key")
        self._keys = sorted(keys, key=lambda k: k.created_at)
        self.max_token_lifetime = max_token_lifetime

    @classmethod
    def from_pem(cls, pem: bytes, max_token_lifetime: timedelta) -> "Keyring":
        key = _load_private_key(pem, "the signing key")
        created = datetime.now(UTC)
        return cls([SigningKey(thumbprint(key.public_key()), key, created)], max_token_lifetime)

    @classmethod
    def from_directory(cls, directory: Path, max_token_lifetime: timedelta) -> "Keyring":
        files = sorted(p for p in directory.glob("*.pem") if _KEY_FILE.match(p.name))
        if not files:
            raise KeyringError(
                f"no signing key in {directory}; create one with "
                f"`python -m auth_service.tokens.keys ensure --dir {directory}`"
            )
        created = [
            datetime.strptime(_KEY_FILE.match(p.name)[1], _TIME_FORMAT).replace(tzinfo=UTC)
            for p in files
        ]
        keys = []
        for index, path in enumerate(files):
            private_key = _load_private_key(path.read_bytes(), str(path))
            retired = created[index + 1] if index + 1 < len(files) else None
            keys.append(
                SigningKey(
                    thumbprint(private_key.public_key()), private_key, created[index], retired
                )
            )
        return cls(keys, max_token_lifetime)

    @property
    def current(self) -> SigningKey:
        return self._keys[-1]

    def valid_keys(self, now: datetime | None = None) -> list[SigningKey]:
        """The signing key and every retired key whose tokens may still be unexpired."""
        now = now or datetime.now(UTC)
        return [
            key
            for key in self._keys
            if key.retired_at is None or key.retired_at + self.max_token_lifetime > now
        ]

    def find(self, kid: str) -> SigningKey | None:
        return next((key for key in self.valid_keys() if key.kid == kid), None)

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        return {"keys": [key.jwk() for key in reversed(self.valid_keys())]}


def create_key_file(directory: Path, now: datetime | None = None) -> Path:
    """Write a new private key, readable by its owner only; it becomes the signing key."""
    directory.mkdir(parents=True, exist_ok=True)
    now = now or datetime.now(UTC)
    path = directory / f"{now.strftime(_TIME_FORMAT)}.pem"
    if path.exists():
        raise KeyringError(f"{path} exists; wait a second before rotating again")
    write_new_private_key(path)
    return path


def ensure_key_file(directory: Path) -> Path | None:
    """Create a first key when the folder has none. The new file, or None if one existed."""
    if any(_KEY_FILE.match(p.name) for p in directory.glob("*.pem")):
        return None
    return create_key_file(directory)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Manage the auth service's signing keys.")
    parser.add_argument("action", choices=("ensure", "rotate"))
    parser.add_argument("--dir", type=Path, help="keys folder (default: AUTH_KEYS_DIR)")
    args = parser.parse_args(argv)
    directory = args.dir
    if directory is None:
        from auth_service.settings import get_settings

        directory = get_settings().keys_dir
    if directory is None:
        parser.error("no keys folder: pass --dir or set AUTH_KEYS_DIR")
    created = ensure_key_file(directory) if args.action == "ensure" else create_key_file(directory)
    print(f"created {created}" if created else f"{directory} already has a signing key")


if __name__ == "__main__":
    main()
