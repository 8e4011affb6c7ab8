"""Service tokens: only a token the holder of the private key made for this very request, for
this audience, of this issuer, unexpired and EdDSA-signed, is accepted."""

import base64
import hashlib
import hmac
import json
import time
import uuid
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import generate_private_key

from common.service_tokens import (
    ServiceTokenRefused,
    ServiceTokenSigner,
    ServiceTokenVerifier,
    key_id,
    load_private_key,
    load_public_key,
)
from tests.support.tokens import service_token_claims

AUDIENCE = "data-service:predictions"
USER = str(uuid.uuid4())
BODY = b'{"label": "benign"}'
GATEWAY_KEY = Ed25519PrivateKey.generate()
PATH = "/predictions/with-images"
KEY = "request-1"


def verifier() -> ServiceTokenVerifier:
    return ServiceTokenVerifier(GATEWAY_KEY.public_key(), "gateway", AUDIENCE)


def claims(**changes) -> dict:
    return service_token_claims(USER, BODY, PATH, KEY, **changes)


def mint() -> str:
    return ServiceTokenSigner(GATEWAY_KEY, "gateway").mint(
        AUDIENCE, USER, BODY, path=PATH, idempotency_key=KEY
    )


def signed(payload: dict, key=GATEWAY_KEY) -> str:
    kid = key_id(GATEWAY_KEY.public_key())
    return jwt.encode(payload, key, algorithm="EdDSA", headers={"kid": kid})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hmac_token(secret: bytes) -> str:
    """An HS256 token keyed with the public key's PEM: the classic algorithm confusion."""
    header = b64(
        json.dumps({"alg": "HS256", "typ": "JWT", "kid": key_id(GATEWAY_KEY.public_key())}).encode()
    )
    payload = b64(json.dumps(claims()).encode())
    signature = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(signature)}"


async def test_the_signers_token_for_this_request_is_accepted():
    accepted = await verifier().verify(mint(), USER, BODY, path=PATH, idempotency_key=KEY)
    assert accepted["user"] == USER and accepted["typ"] == "service"
    assert accepted["exp"] - accepted["iat"] == 60


def refused_cases() -> dict[str, str | None]:
    public_pem = GATEWAY_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    unsigned = jwt.encode(claims(), key=None, algorithm="none")
    return {
        "missing": None,
        "empty": "",
        "not a token": "not.a.token",
        "another key": signed(claims(), Ed25519PrivateKey.generate()),
        "another audience": signed(claims(aud="data-service:images")),
        "another issuer": signed(claims(iss="frontend")),
        "expired": signed(claims(iat=int(time.time()) - 600, exp=int(time.time()) - 60)),
        "an access token's type": signed(claims(typ="access", role="admin")),
        "no expiry": signed({k: v for k, v in claims().items() if k != "exp"}),
        "alg none": unsigned,
        "HS256 keyed with the public key": hmac_token(public_pem),
        "tampered": signed(claims())[:-4] + "AAAA",
    }


REFUSED = [
    "missing",
    "empty",
    "not a token",
    "another key",
    "another audience",
    "another issuer",
    "expired",
    "an access token's type",
    "no expiry",
    "alg none",
    "HS256 keyed with the public key",
    "tampered",
]


def test_every_refused_case_is_run():
    assert sorted(refused_cases()) == sorted(REFUSED)


@pytest.mark.parametrize("case", REFUSED)
async def test_a_token_that_is_not_the_signers_valid_one_is_refused_401(case):
    token = refused_cases()[case]
    with pytest.raises(ServiceTokenRefused) as refused:
        await verifier().verify(token, USER, BODY, path=PATH, idempotency_key=KEY)
    assert refused.value.status_code == 401
    assert refused.value.code == "invalid_service_token"


OTHER_REQUESTS = {
    "another user": (str(uuid.uuid4()), BODY, PATH, KEY),
    "another body": (USER, b'{"label": "malignant"}', PATH, KEY),
    "another route": (USER, BODY, "/predictions", KEY),
    "another key": (USER, BODY, PATH, "request-2"),
    "no key": (USER, BODY, PATH, None),
}


@pytest.mark.parametrize("case", sorted(OTHER_REQUESTS))
async def test_a_valid_token_for_another_request_is_refused_403(case):
    user, body, path, key = OTHER_REQUESTS[case]
    with pytest.raises(ServiceTokenRefused) as refused:
        await verifier().verify(mint(), user, body, path=path, idempotency_key=key)
    assert refused.value.status_code == 403


def test_keys_load_from_pem_text_or_file_and_anything_else_is_refused(tmp_path: Path):
    private_pem = GATEWAY_KEY.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = GATEWAY_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (tmp_path / "public.pem").write_bytes(public_pem)
    loaded = load_private_key(private_pem.decode())
    assert loaded is not None and loaded.public_key() == GATEWAY_KEY.public_key()
    assert load_public_key(path=tmp_path / "public.pem") == GATEWAY_KEY.public_key()
    assert load_private_key() is None and load_public_key() is None
    rsa_pem = (
        generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(ValueError, match="not an Ed25519 key"):
        load_public_key(rsa_pem.decode())
    with pytest.raises(ValueError, match="not a PEM public key"):
        load_public_key("garbage")
    with pytest.raises(ValueError, match="not an unencrypted PEM private key"):
        load_private_key(public_pem.decode())  # the public half where the private one goes
    with pytest.raises(ValueError, match="not both"):
        load_public_key(public_pem.decode(), tmp_path / "public.pem")
