"""POST /predict/batch from a slide-analysis worker: no bearer token, but the worker's service
token (`X-Service-Token`) made for that very request, naming the user it acts for. Only .npy
patches, only with the key the service was given, and a user's own bearer token as before."""

import base64
import hashlib
import hmac
import io
import json
import logging
import time
import uuid

import jwt
import numpy as np
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from common.service_tokens import SERVICE_TOKEN_HEADER, ServiceTokenSigner, key_id
from tests.support.inference import running_inference
from tests.support.tokens import bearer, mint_service_token, mint_token, service_token_claims

PATH = "/predict/batch"
WORKER_KEY = Ed25519PrivateKey.generate()
WORKER_PUBLIC_PEM = WORKER_KEY.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)
NPY = {"Content-Type": "application/x-npy"}


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def patches(count: int = 3, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    return npy(rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8))


def worker_token(user: str, body: bytes, path: str = PATH, audience: str = "inference") -> str:
    """What the worker sends: its token for `body` at `path` on behalf of `user`."""
    return ServiceTokenSigner(WORKER_KEY, "slide-worker").mint(audience, user, body, path=path)


def worker_claims(user: str, body: bytes, **changes: object) -> dict:
    """The claims the worker signs for `body` on behalf of `user`, with `changes`."""
    worker = {"iss": "slide-worker", "aud": "inference", "sub": "slide-worker"}
    return {**service_token_claims(user, body, PATH), **worker, **changes}


def signed(claims: dict, key: Ed25519PrivateKey = WORKER_KEY) -> str:
    """`claims` signed with `key`, naming the worker's key id."""
    kid = key_id(WORKER_KEY.public_key())
    return jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": kid})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hmac_token(claims: dict) -> str:
    """HS256 keyed with the worker's public key PEM: the classic algorithm confusion."""
    header = b64(json.dumps({"alg": "HS256", "kid": key_id(WORKER_KEY.public_key())}).encode())
    payload = b64(json.dumps(claims).encode())
    mac = hmac.new(WORKER_PUBLIC_PEM, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(mac)}"


async def post_as_worker(client, body: bytes, token: str | None, query: str = "", **headers):
    service = {SERVICE_TOKEN_HEADER: token} if token is not None else {}
    return await client.post(f"{PATH}{query}", content=body, headers={**NPY, **service, **headers})


def assessed(app) -> float:
    """Patches and images the service has assessed so far."""
    return sum(
        sample.value
        for metric in app.state.metrics_registry.collect()
        if metric.name == "inference_assessments"
        for sample in metric.samples
        if sample.name == "inference_assessments_total"
    )


async def test_a_workers_token_made_for_its_request_gets_the_answer_a_clinician_gets(
    inference_db, models_dir, caplog
):
    user = str(uuid.uuid4())
    body = patches()
    service_logger = logging.getLogger("inference_service")
    level = service_logger.level
    async with running_inference(
        inference_db, models_dir, slide_worker_public_key=WORKER_PUBLIC_PEM.decode()
    ) as (app, client):
        service_logger.setLevel(logging.DEBUG)
        service_logger.addHandler(caplog.handler)
        try:
            # The token binds the path, not the query: the worker chooses its options.
            worker = await post_as_worker(
                client, body, worker_token(user, body), "?quality=false&heatmap=true"
            )
        finally:
            service_logger.removeHandler(caplog.handler)
            service_logger.setLevel(level)
        counted = assessed(app)
        clinician = await client.post(
            f"{PATH}?quality=false&heatmap=true",
            content=body,
            headers={**NPY, **bearer(mint_token("clinician"))},
        )
    assert worker.status_code == 200, worker.text
    assert clinician.status_code == 200, clinician.text
    assert counted == 3
    worker_items, clinician_items = worker.json()["items"], clinician.json()["items"]
    assert worker_items == clinician_items
    assert [item["label"] is not None for item in worker_items] == [True] * 3
    # Logged as the worker acting for the user, not as the user.
    assert any(f"from slide-worker for user {user}" in r.getMessage() for r in caplog.records)


async def test_a_worker_token_not_made_by_the_worker_for_this_request_predicts_nothing(
    inference_db, models_dir, tmp_path
):
    user = str(uuid.uuid4())
    body = patches()
    other_key = Ed25519PrivateKey.generate()
    past = int(time.time()) - 600
    (tmp_path / "public.pem").write_bytes(WORKER_PUBLIC_PEM)
    async with running_inference(
        inference_db, models_dir, slide_worker_public_key_file=tmp_path / "public.pem"
    ) as (app, client):
        invalid = {
            "no token at all": None,
            "not a token": "forged",
            "another key, its own key id": jwt.encode(
                worker_claims(user, body),
                other_key,
                algorithm="EdDSA",
                headers={"kid": key_id(other_key.public_key())},
            ),
            "another key, the worker's key id": signed(worker_claims(user, body), other_key),
            "expired": signed(worker_claims(user, body, iat=past, exp=past + 60)),
            "another audience": worker_token(user, body, audience="data-service:predictions"),
            "another issuer": signed(worker_claims(user, body, iss="gateway")),
            "the gateway's own token": mint_service_token(user, body, "inference", PATH),
            "a user's access token": mint_token("clinician", user),
            "alg none": jwt.encode(worker_claims(user, body), key=None, algorithm="none"),
            "HS256 keyed with the public key": hmac_token(worker_claims(user, body)),
            "no user": signed({**worker_claims(user, body), "user": None}),
        }
        refused_401 = {case: await post_as_worker(client, body, t) for case, t in invalid.items()}
        other_request = {
            "another path": worker_token(user, body, path="/predict"),
            "another body": worker_token(user, patches(seed=1)),
        }
        refused_403 = {
            case: await post_as_worker(client, body, t) for case, t in other_request.items()
        }
        # The token is only looked at without an Authorization header: a viewer's token with
        # a good worker token is the viewer's call, and refused.
        viewer = await post_as_worker(
            client, body, worker_token(user, body), **bearer(mint_token("viewer"))
        )
        # The signature is checked before the body is read, and the limits hold for a worker.
        huge = {"Content-Length": str(10**9)}
        forged_huge = await post_as_worker(client, body, "forged", **huge)
        genuine_huge = await post_as_worker(client, body, worker_token(user, body), **huge)
        nothing = assessed(app)
        accepted = await post_as_worker(client, body, worker_token(user, body), "?quality=false")
    for case, answer in refused_401.items():
        assert answer.status_code == 401, (case, answer.text)
        expected = "not_authenticated" if invalid[case] is None else "invalid_service_token"
        assert answer.json()["error"]["code"] == expected, (case, answer.text)
    for case, answer in refused_403.items():
        assert answer.status_code == 403, (case, answer.text)
        assert "another request" in answer.json()["error"]["message"], case
    assert viewer.status_code == 403, viewer.text
    assert forged_huge.status_code == 401 and genuine_huge.status_code == 413
    assert nothing == 0
    assert accepted.status_code == 200, accepted.text  # the key from the file is the one used


async def test_a_worker_token_is_for_npy_patches_only(inference_db, models_dir):
    """Multipart images with a worker token are refused, even with a token bound to them: a
    worker sends patches, and the images' limits are not meant for a whole body read at once."""
    user = str(uuid.uuid4())
    async with running_inference(
        inference_db, models_dir, slide_worker_public_key=WORKER_PUBLIC_PEM.decode()
    ) as (app, client):
        request = client.build_request(
            "POST", PATH, files={"files": ("x.png", b"\x89PNG\r\n\x1a\n", "image/png")}
        )
        body = request.read()
        request.headers[SERVICE_TOKEN_HEADER] = worker_token(user, body)
        multipart = await client.send(request)
        other_type = await client.post(
            PATH,
            content=body,
            headers={"Content-Type": "text/csv", SERVICE_TOKEN_HEADER: worker_token(user, body)},
        )
        nothing = assessed(app)
    for answer in (multipart, other_type):
        assert answer.status_code == 403, answer.text
        assert "application/x-npy" in answer.json()["error"]["message"]
    assert nothing == 0


async def test_without_the_workers_public_key_worker_tokens_are_refused_and_users_served(
    inference_db, models_dir
):
    user = str(uuid.uuid4())
    body = patches()
    async with running_inference(inference_db, models_dir) as (app, client):
        worker = await post_as_worker(client, body, worker_token(user, body), "?quality=false")
        nothing = assessed(app)
        clinician = await client.post(
            f"{PATH}?quality=false",
            content=body,
            headers={**NPY, **bearer(mint_token("clinician", user))},
        )
    assert worker.status_code == 401, worker.text
    error = worker.json()["error"]
    assert error["code"] == "service_key_not_configured"
    assert "INFERENCE_SLIDE_WORKER_PUBLIC_KEY" in error["message"]
    assert nothing == 0
    assert clinician.status_code == 200, clinician.text
    assert len(clinician.json()["items"]) == 3
