"""The shared token verifier: JWKS caching, refetching for new keys, and auth outages."""

import asyncio
import time
import uuid

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import OKPAlgorithm

from common.auth import LEEWAY_S, InvalidToken, JwksCache, TokenVerifier, require_roles
from common.errors import ServiceError


class FakeAuth:
    """The JWKS endpoint of an auth service that can rotate keys and go down."""

    def __init__(self) -> None:
        self.keys: dict[str, Ed25519PrivateKey] = {}
        self.fetches = 0
        self.down = False
        self.rotate()

    def rotate(self) -> str:
        kid = uuid.uuid4().hex
        self.keys[kid] = Ed25519PrivateKey.generate()
        self.current = kid
        return kid

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.fetches += 1
        if self.down:
            raise httpx.ConnectError("refused", request=request)
        jwks = [
            {**OKPAlgorithm.to_jwk(k.public_key(), as_dict=True), "kid": kid}
            for kid, k in self.keys.items()
        ]
        return httpx.Response(200, json={"keys": jwks})

    def token(self, kid: str | None = None, **claims) -> str:
        kid = kid or self.current
        now = int(time.time())
        payload = {
            "iss": "iss",
            "aud": "aud",
            "sub": "u1",
            "role": "viewer",
            "iat": now,
            "exp": now + 60,
            "jti": uuid.uuid4().hex,
            "typ": "access",
            **claims,
        }
        return jwt.encode(payload, self.keys[kid], algorithm="EdDSA", headers={"kid": kid})


@pytest.fixture
async def fake():
    fake = FakeAuth()
    client = httpx.AsyncClient(transport=httpx.MockTransport(fake.handler), base_url="http://a")
    fake.cache = JwksCache(client, "/jwks", ttl_s=300, min_refetch_interval_s=0.2)
    fake.verifier = TokenVerifier(fake.cache.key_for, issuer="iss", audience="aud")
    yield fake
    await client.aclose()


async def test_keys_are_fetched_once_and_cached(fake):
    for _ in range(5):
        principal = await fake.verifier.verify(fake.token())
    assert principal.subject == "u1" and principal.role == "viewer"
    assert fake.fetches == 1


async def test_a_new_key_id_is_fetched_but_not_more_often_than_allowed(fake):
    await fake.verifier.verify(fake.token())
    new_kid = fake.rotate()
    with pytest.raises(InvalidToken, match="unknown key"):  # just fetched: not again yet
        await fake.verifier.verify(fake.token(new_kid))
    assert fake.fetches == 1
    await asyncio.sleep(0.25)
    assert (await fake.verifier.verify(fake.token(new_kid))).subject == "u1"
    assert fake.fetches == 2
    # Forged key ids in a burst: the first causes one fetch, the rest wait for the interval.
    forged = [
        jwt.encode(
            {}, Ed25519PrivateKey.generate(), algorithm="EdDSA", headers={"kid": f"forged-{i}"}
        )
        for i in range(10)
    ]
    await asyncio.sleep(0.25)
    for token in forged:
        with pytest.raises(InvalidToken, match="unknown key"):
            await fake.verifier.verify(token)
    assert fake.fetches == 3


async def test_cached_keys_keep_working_while_auth_is_down(fake):
    await fake.verifier.verify(fake.token())
    fake.down = True
    fake.cache._fetched_at -= 1000  # the cache is past its lifetime
    assert (await fake.verifier.verify(fake.token())).subject == "u1"


async def test_without_any_keys_an_auth_outage_is_a_503(fake):
    fake.down = True
    with pytest.raises(ServiceError) as raised:
        await fake.verifier.verify(fake.token())
    assert raised.value.status_code == 503
    assert "auth service is unavailable" in raised.value.message


async def test_role_claims_outside_the_known_roles_are_refused(fake):
    with pytest.raises(InvalidToken):
        await fake.verifier.verify(fake.token(role="superuser"))


def test_require_roles_refuses_unknown_role_names():
    with pytest.raises(ValueError, match="unknown roles"):
        require_roles("admin", "root")


@pytest.fixture
def signature_checks(monkeypatch) -> list[str]:
    """The tokens whose signature was checked (PyJWT's decode), in order."""
    checked: list[str] = []
    decode = jwt.decode

    def counting(token, *args, **kwargs):
        checked.append(token)
        return decode(token, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting)
    return checked


async def test_a_verified_token_is_kept_and_its_signature_not_checked_again(fake, signature_checks):
    token = fake.token()
    first = await fake.verifier.verify(token)
    for _ in range(5):
        assert await fake.verifier.verify(token) == first
    assert signature_checks == [token]


async def test_different_tokens_are_never_confused(fake, signature_checks):
    viewer, admin = fake.token(sub="u1"), fake.token(sub="u2", role="admin")
    for _ in range(3):
        assert (await fake.verifier.verify(viewer)).subject == "u1"
        assert (await fake.verifier.verify(admin)).role == "admin"
    assert signature_checks == [viewer, admin]
    # The kept token with its signature changed is another text: checked, and refused.
    tampered = viewer[:-6] + ("AAAAAA" if viewer[-6:] != "AAAAAA" else "BBBBBB")
    with pytest.raises(InvalidToken):
        await fake.verifier.verify(tampered)


async def test_a_kept_token_is_refused_once_it_expires(fake):
    # Accepted now only thanks to the leeway; past it within about a second.
    expires = int(time.time()) - LEEWAY_S + 1
    token = fake.token(exp=expires, iat=expires - 60)
    assert (await fake.verifier.verify(token)).subject == "u1"
    while time.time() < expires + LEEWAY_S:  # the token's own clock passing its end
        await asyncio.sleep(0.05)
    with pytest.raises(InvalidToken, match="expired"):
        await fake.verifier.verify(token)


async def test_a_kept_token_of_a_key_rotated_out_is_refused(fake, signature_checks):
    old_kid = fake.current
    token = fake.token()
    await fake.verifier.verify(token)
    fake.rotate()
    del fake.keys[old_kid]  # the auth service no longer publishes it
    fake.cache._fetched_at -= 1000  # its JWKS is read again on the next check
    with pytest.raises(InvalidToken, match="unknown key"):
        await fake.verifier.verify(token)


async def test_a_refused_token_is_not_kept_and_the_type_asked_for_is_checked(
    fake, signature_checks
):
    bad_role = fake.token(role="superuser")
    for _ in range(2):
        with pytest.raises(InvalidToken):
            await fake.verifier.verify(bad_role)
    assert signature_checks == [bad_role, bad_role]
    refresh = fake.token(typ="refresh")
    assert (await fake.verifier.verify(refresh, expected_type="refresh")).subject == "u1"
    with pytest.raises(InvalidToken, match="not an access token"):
        await fake.verifier.verify(refresh)


async def test_the_kept_tokens_are_bounded(fake):
    verifier = TokenVerifier(fake.cache.key_for, issuer="iss", audience="aud", cache_size=3)
    for _ in range(10):
        await verifier.verify(fake.token())
    assert len(verifier._verified) == 3
