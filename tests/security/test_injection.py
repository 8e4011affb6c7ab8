"""SQL and header injection strings in every text the API takes: each is refused with a 4xx
envelope or stored exactly as sent; never a 5xx, an injected header, or a damaged table."""

import socket
import uuid

import pytest

from tests.security.conftest import PASSWORD, assert_client_error, counts, new_address, predict
from tests.support.images import png_bytes
from tests.support.sql import fetch

pytestmark = pytest.mark.timeout(300)

NASTY = [
    "' OR 1=1 --",
    '"; DROP TABLE predictions; --',
    "x'); DELETE FROM users; --",
    "\r\nX-Injected: 1",
    "nul\x00byte",
    "%00%0d%0aX-Injected:%201",
    "\u202egnp.exe \u00e9\u00e8 \u4e2d\u6587 \U0001f52c",
    "\ud7ff\ufeff\u2028",
    "A" * 10_000,
]
IDS = ["or", "drop", "delete", "crlf", "nul", "encoded", "unicode", "odd_unicode", "long"]


def assert_stored_or_refused(answer, field: str, sent: str, ok: tuple[int, ...] = (200, 201)):
    """Either a 4xx envelope or a success that echoes the text exactly (as stored)."""
    assert answer.status_code < 500, (answer.status_code, answer.text)
    assert "x-injected" not in answer.headers
    if answer.status_code in ok:
        assert answer.json()[field] == sent
        return True
    assert_client_error(answer)
    return False


def assert_tables_intact(databases, before: dict[str, dict[str, int]]) -> None:
    for service, tables in before.items():
        now = counts(databases, service)
        for table, n in tables.items():
            assert now[table] >= n, (service, table)  # nothing dropped or deleted


@pytest.fixture
def tables(databases):
    before = {"data": counts(databases), "auth": counts(databases, "auth")}
    yield before
    assert_tables_intact(databases, before)


@pytest.mark.parametrize("text", NASTY, ids=IDS)
def test_patient_fields(api, databases, clinician, viewer, tables, text):
    ref = api.post("/api/v1/patients", json={"external_ref": text}, headers=clinician.headers)
    assert_client_error(ref, 422)  # references are codes: letters, digits and ._- only
    created = api.post(
        "/api/v1/patients",
        json={"external_ref": f"INJ-{uuid.uuid4().hex[:8]}", "notes": text},
        headers=clinician.headers,
    )
    if assert_stored_or_refused(created, "notes", text, (201,)):
        [row] = fetch(
            databases["data"],
            "SELECT notes FROM patients WHERE id = $1",
            uuid.UUID(created.json()["id"]),
        )
        assert row["notes"] == text
        patched = api.patch(
            f"/api/v1/patients/{created.json()['id']}",
            json={"notes": text[::-1]},
            headers=clinician.headers,
        )
        assert_stored_or_refused(patched, "notes", text[::-1])
    search = api.get("/api/v1/patients", params={"search": text}, headers=viewer.headers)
    if search.status_code == 200:
        # A prefix search: an injected "OR 1=1" must not match everyone.
        assert all(p["external_ref"].startswith(text) for p in search.json()["items"])
    else:
        assert_client_error(search, 422)


@pytest.mark.parametrize("text", NASTY, ids=IDS)
def test_review_comments(api, databases, clinician, prediction, tables, text):
    answer = api.post(
        f"/api/v1/predictions/{prediction['id']}/review",
        json={"verdict": "agree", "comment": text},
        headers=clinician.headers,
    )
    if assert_stored_or_refused(answer, "comment", text, (201,)):
        [row] = fetch(
            databases["data"],
            "SELECT comment FROM reviews WHERE id = $1",
            uuid.UUID(answer.json()["id"]),
        )
        assert row["comment"] == text


@pytest.mark.parametrize("text", NASTY, ids=IDS)
def test_list_filters(api, viewer, tables, text):
    for params in (
        {"model_version": text},
        {"cursor": text},
        {"label": text},
        {"patient_id": text},
        {"created_from": text},
    ):
        answer = api.get("/api/v1/predictions", params=params, headers=viewer.headers)
        assert answer.status_code < 500, (params, answer.text)
        if answer.status_code == 200:
            assert answer.json()["items"] == []  # no prediction matches an injected filter
        else:
            assert_client_error(answer, 422)
    users = api.get("/api/v1/admin/users", params={"role": text}, headers=viewer.headers)
    assert_client_error(users, 403, 422)


@pytest.mark.parametrize("text", NASTY, ids=IDS)
def test_login_username_and_password(api, databases, tables, text):
    # A new account name each time, so the per-account lockout does not answer instead.
    for form in (
        {"username": text, "password": PASSWORD},
        {"username": f"{uuid.uuid4().hex}@example.com", "password": text},
    ):
        answer = api.post(
            "/api/v1/auth/token", data=form, headers={"X-Forwarded-For": new_address()}
        )
        assert_client_error(answer, 401, 422)
        assert "access_token" not in answer.text


@pytest.mark.parametrize("text", NASTY, ids=IDS)
def test_user_fields(api, databases, admin, tables, text):
    email = f"inj-{uuid.uuid4().hex[:8]}@example.com"
    created = api.post(
        "/api/v1/admin/users",
        json={"email": email, "full_name": text, "role": "viewer", "password": PASSWORD},
        headers=admin.headers,
    )
    # Names are trimmed of surrounding white space on purpose; the rest is kept as sent.
    name = text.strip()
    if assert_stored_or_refused(created, "full_name", name, (201,)):
        [row] = fetch(databases["auth"], "SELECT full_name FROM users WHERE email = $1", email)
        assert row["full_name"] == name
        patched = api.patch(
            f"/api/v1/admin/users/{created.json()['id']}",
            json={"full_name": "!" + text},
            headers=admin.headers,
        )
        assert_stored_or_refused(patched, "full_name", ("!" + text).strip())
    else:
        assert not fetch(databases["auth"], "SELECT 1 FROM users WHERE email = $1", email)
    bad_email = api.post(
        "/api/v1/admin/users",
        json={"email": text, "full_name": "x", "role": "viewer", "password": PASSWORD},
        headers=admin.headers,
    )
    assert_client_error(bad_email, 422)


def raw_request(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(request)
        answer = b""
        while b"\r\n\r\n" not in answer:
            block = connection.recv(65536)
            if not block:
                break
            answer += block
    return answer


@pytest.mark.parametrize(
    "value",
    [
        b"' OR 1=1 --",
        b'"; DROP TABLE predictions; --',
        b"abc%0d%0aX-Injected:%201",
        "\u4e2d\u6587-\U0001f52c".encode(),
        b"B" * 5000,
        b"ok\x00nul",
    ],
)
def test_request_ids_are_never_echoed_unless_they_look_like_ids(stack, clinician, value):
    port = stack.ports["gateway"]
    answer = raw_request(
        port,
        b"GET /api/v1/patients HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n"
        + b"Authorization: "
        + clinician.headers["Authorization"].encode()
        + b"\r\nX-Request-ID: "
        + value
        + b"\r\n\r\n",
    )
    head = answer.split(b"\r\n\r\n")[0].lower()
    status = int(head.split(b" ")[1])
    assert status < 500, answer[:300]
    assert b"x-injected" not in head
    if status == 200:
        [request_id] = [line for line in head.split(b"\r\n") if line.startswith(b"x-request-id:")]
        assert value.lower() not in request_id


def test_a_crlf_in_a_header_cannot_split_the_answer(stack, clinician):
    # The bytes after the CR LF arrive as a header of their own (that is HTTP); what matters
    # is that nothing the caller sends comes back as a header of ours.
    answer = raw_request(
        stack.ports["gateway"],
        b"GET /api/v1/patients?search=a%0d%0aX-Injected:%201 HTTP/1.1\r\nHost: gateway\r\n"
        b"Connection: close\r\nAuthorization: "
        + clinician.headers["Authorization"].encode()
        + b"\r\nX-Request-ID: abc\r\nX-Injected: 1\r\nIdempotency-Key: k\rX-Injected: 2\r\n\r\n",
    )
    head = answer.split(b"\r\n\r\n")[0].lower()
    assert int(head.split(b" ")[1]) < 500, answer[:300]
    assert b"x-injected" not in head


@pytest.mark.parametrize(
    "key",
    [
        "' OR 1=1 --",
        "'OR'1'='1'--",
        '";DROP/**/TABLE/**/predictions;--',
        "k" * 129,
        "\u00e9t\u00e9",
    ],
)
def test_idempotency_keys(api, databases, clinician, tables, key):
    image = png_bytes(seed=9400 + len(key), size=32)
    answer = predict(
        api,
        clinician.headers,
        image,
        extra_headers={"Idempotency-Key": key.encode()},
        params={"heatmap": "false"},
    )
    assert answer.status_code < 500, answer.text
    if answer.status_code == 201:
        [row] = fetch(
            databases["data"],
            "SELECT idempotency_key FROM predictions WHERE id = $1",
            uuid.UUID(answer.json()["id"]),
        )
        assert row["idempotency_key"] == key
        again = predict(
            api, clinician.headers, image, extra_headers={"Idempotency-Key": key.encode()}
        )
        assert again.status_code == 200 and again.json()["id"] == answer.json()["id"]
    else:
        assert_client_error(answer, 422)
