"""Slides through the gateway, against a fake slide and data service over real HTTP: uploads
stream through (never held), limits and field order hold while streaming, a body that goes
wrong reaches the slide service as an incomplete upload, and errors, cache headers and view
grants pass through as they are."""

import hashlib
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from devstack.postgres import free_port
from gateway.main import create_app
from gateway.settings import GatewaySettings
from tests.support import tokens
from tests.support.launcher import wait_for
from tests.support.served import served
from tests.support.tokens import bearer, mint_token

DEADLINE_S = 30.0
BOUNDARY = "slide-boundary-7f3a"
TILE = b"\xff\xd8\xff\xe0fake-jpeg-tile\xff\xd9"
TILE_ETAG = '"tile-1"'
CACHE = "private, max-age=86400, immutable"


def envelope(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message, "request_id": "from-the-service"}}


class FakeUpstream:
    """The slide service and the data service's patients, in one app: records what reaches
    it, reads uploads as a stream and notes whether each arrived whole."""

    def __init__(self) -> None:
        self.patients: set[str] = set()
        self.uploads: list[dict] = []
        self.calls: list[dict] = []
        self.upload_ended = threading.Event()
        self.answer: tuple[int, dict] | None = None  # instead of a stored slide
        app = FastAPI()

        @app.get("/ready")
        async def ready() -> dict:
            return {"status": "ready", "checks": {}}

        @app.get("/patients/{patient_id}")
        async def patient(patient_id: str) -> JSONResponse:
            if patient_id in self.patients:
                return JSONResponse({"id": patient_id})
            return JSONResponse(envelope("patient_not_found", "No such patient."), 404)

        @app.post("/slides")
        async def upload(request: Request) -> JSONResponse:
            record = {
                "query": dict(request.query_params),
                "headers": dict(request.headers),
                "size": 0,
                "outcome": "reading",
            }
            self.uploads.append(record)
            digest = hashlib.sha256()
            try:
                async for chunk in request.stream():
                    digest.update(chunk)
                    record["size"] += len(chunk)
            except ClientDisconnect:
                record["outcome"] = "incomplete"
                self.upload_ended.set()
                return JSONResponse(envelope("upload_incomplete", "cut off"), 400)
            record["outcome"] = "complete"
            record["sha256"] = digest.hexdigest()
            self.upload_ended.set()
            if self.answer is not None:
                return JSONResponse(self.answer[1], self.answer[0])
            return JSONResponse(slide_json(record), 201)

        @app.api_route("/slides/{rest:path}", methods=["GET", "POST", "DELETE"])
        async def anything(request: Request, rest: str) -> Response:
            self.calls.append(
                {
                    "method": request.method,
                    "path": request.url.path,
                    "query": dict(request.query_params),
                    "headers": dict(request.headers),
                }
            )
            if rest.endswith("/view-links"):
                grant = "eyJhbGciOiJIUzI1NiJ9.eyJzaWQiOiJ4In0.c2ln+/="
                return JSONResponse({"grant": grant, "expires_at": "2026-12-04T15:00:00Z"})
            if "/tiles/" in rest or rest.endswith("/dzi"):
                headers = {"ETag": TILE_ETAG, "Cache-Control": CACHE}
                if request.headers.get("if-none-match") == TILE_ETAG:
                    return Response(status_code=304, headers=headers)
                return Response(TILE, media_type="image/jpeg", headers=headers)
            if request.method == "DELETE":
                return Response(status_code=204)
            return JSONResponse(envelope("slide_not_found", "No such slide."), 404)

        self.app = app

    def reset(self) -> None:
        self.uploads.clear()
        self.calls.clear()
        self.upload_ended.clear()
        self.answer = None

    def wait_for_upload_end(self) -> dict:
        assert self.upload_ended.wait(DEADLINE_S), "the slide service never saw the upload end"
        return self.uploads[-1]


def slide_json(record: dict) -> dict:
    query = record["query"]
    return {
        "id": str(uuid.uuid4()),
        "patient_id": query["patient_id"],
        "filename": query["filename"],
        "format": "aperio",
        "width": 2220,
        "height": 2967,
        "level_count": 1,
        "levels": [{"width": 2220, "height": 2967, "downsample": 1.0}],
        "microns_per_pixel_x": 0.499,
        "microns_per_pixel_y": 0.499,
        "resolution_source": "file",
        "objective_power": 20,
        "associated_images": [],
        "size_bytes": record["size"],
        "sha256": record["sha256"],
        "uploaded_by": "someone",
        "created_at": "2026-12-04T14:00:00Z",
    }


@pytest.fixture(scope="module")
def upstream_server():
    upstream = FakeUpstream()
    with served(upstream.app) as url:
        yield upstream, url


@pytest.fixture
def upstream(upstream_server):
    upstream, _ = upstream_server
    upstream.reset()
    return upstream


@pytest.fixture
def patient(upstream) -> str:
    patient_id = str(uuid.uuid4())
    upstream.patients.add(patient_id)
    return patient_id


@contextmanager
def gateway(upstream_server, **overrides) -> Iterator[httpx.Client]:
    """The gateway on a port of its own, with the fake as its slide and data service (and
    nothing behind auth and inference), trusting the tests' tokens."""
    _, url = upstream_server
    dead = f"http://127.0.0.1:{free_port()}"
    settings = {
        "auth_url": dead,
        "inference_url": dead,
        "data_url": url,
        "slide_url": url,
        "retry_attempts": 1,
        "breaker_threshold": 1,  # one failure counted against the slide service would show
        **overrides,
    }
    app = create_app(GatewaySettings(_env_file=None, **settings))
    app.state.token_verifier = tokens.test_verifier()
    with served(app) as base, httpx.Client(base_url=base, timeout=DEADLINE_S) as client:
        yield client


@pytest.fixture
def api(upstream_server):
    with gateway(upstream_server) as client:
        yield client


def clinician() -> dict[str, str]:
    return bearer(mint_token("clinician"))


def form_part(name: str, value: str) -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
    ).encode()


def file_head(filename: str = "slide.svs") -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()


FILE_END = f"\r\n--{BOUNDARY}--\r\n".encode()
MULTIPART = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


def test_a_multipart_upload_streams_to_the_slide_service_before_it_has_all_arrived(
    api, upstream, patient
):
    first, rest = os.urandom(1024 * 1024), os.urandom(2 * 1024 * 1024)

    def body() -> Iterator[bytes]:
        yield form_part("patient_id", patient) + form_part("microns_per_pixel", "0.25")
        yield file_head("case 7.svs") + first
        # The rest is held back until the slide service has bytes of the file: a gateway
        # that read the whole body before passing it on would never get here.
        wait_for(
            lambda: upstream.uploads and upstream.uploads[-1]["size"] > 0,
            DEADLINE_S,
            "the first bytes to reach the slide service while the upload still streams in",
            interval_s=0.01,
        )
        yield rest + FILE_END

    headers = {**clinician(), **MULTIPART, "X-Request-ID": "slide-upload-1"}
    answer = api.post("/api/v1/slides", content=body(), headers=headers)

    assert answer.status_code == 201, answer.text
    received = upstream.uploads[-1]
    assert received["outcome"] == "complete"
    assert received["sha256"] == hashlib.sha256(first + rest).hexdigest()
    assert answer.json()["sha256"] == received["sha256"]
    assert received["query"] == {
        "patient_id": patient,
        "filename": "case 7.svs",
        "microns_per_pixel": "0.25",
    }
    assert received["headers"]["authorization"] == headers["Authorization"]
    assert received["headers"]["x-request-id"] == "slide-upload-1"
    assert received["headers"]["content-type"] == "application/octet-stream"


def test_a_raw_body_upload_takes_its_fields_from_the_query(api, upstream, patient):
    data = os.urandom(300_000)
    answer = api.post(
        "/api/v1/slides",
        params={"patient_id": patient, "filename": "series.zip"},
        content=data,
        headers={**clinician(), "Content-Type": "application/zip"},
    )
    assert answer.status_code == 201, answer.text
    received = upstream.uploads[-1]
    assert received["sha256"] == hashlib.sha256(data).hexdigest()
    assert received["query"] == {"patient_id": patient, "filename": "series.zip"}
    assert received["headers"]["content-type"] == "application/zip"
    assert received["headers"]["content-length"] == str(len(data))


def test_fields_after_the_file_are_refused_naming_the_order(api, upstream, patient):
    late_patient = file_head() + b"slide bytes" + b"\r\n" + form_part("patient_id", patient)
    answer = api.post(
        "/api/v1/slides",
        content=late_patient + f"--{BOUNDARY}--\r\n".encode(),
        headers={**clinician(), **MULTIPART},
    )
    assert answer.status_code == 422
    assert "before file" in answer.json()["error"]["message"]
    assert upstream.uploads == []  # nothing was sent for a patient nobody checked

    def late_resolution() -> Iterator[bytes]:
        yield form_part("patient_id", patient) + file_head() + os.urandom(100_000)
        wait_for(
            lambda: upstream.uploads and upstream.uploads[-1]["size"] > 0,
            DEADLINE_S,
            "the file to stream to the slide service",
            interval_s=0.01,
        )
        yield b"\r\n" + form_part("microns_per_pixel", "0.5") + f"--{BOUNDARY}--\r\n".encode()

    answer = api.post(
        "/api/v1/slides", content=late_resolution(), headers={**clinician(), **MULTIPART}
    )
    assert answer.status_code == 422
    assert "before file" in answer.json()["error"]["message"]
    # The file had started streaming: the slide service saw it end short, and stores nothing.
    assert upstream.wait_for_upload_end()["outcome"] == "incomplete"


def test_an_unknown_patient_is_refused_before_any_byte_reaches_the_slide_service(api, upstream):
    answer = api.post(
        "/api/v1/slides",
        content=form_part("patient_id", str(uuid.uuid4())) + file_head() + b"x" + FILE_END,
        headers={**clinician(), **MULTIPART},
    )
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "patient_not_found"
    assert upstream.uploads == []


@pytest.mark.parametrize("filename", ["../../etc/passwd", "a\\b.svs", "slide\x01.svs", ".."])
def test_a_file_name_that_could_be_a_path_is_refused_before_streaming(
    api, upstream, patient, filename
):
    answer = api.post(
        "/api/v1/slides",
        params={"patient_id": patient, "filename": filename},
        content=b"II*\x00" + b"\x00" * 100,
        headers={**clinician(), "Content-Type": "application/octet-stream"},
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] in ("invalid_filename", "validation_error")
    assert upstream.uploads == []


def test_a_viewer_may_not_upload_and_nothing_reaches_the_slide_service(api, upstream, patient):
    answer = api.post(
        "/api/v1/slides",
        params={"patient_id": patient, "filename": "a.svs"},
        content=b"x" * 1000,
        headers={**bearer(mint_token("viewer")), "Content-Type": "application/octet-stream"},
    )
    assert answer.status_code == 403
    assert upstream.uploads == []


def test_another_media_type_is_refused_saying_what_to_send(api, upstream, patient):
    answer = api.post(
        "/api/v1/slides",
        params={"patient_id": patient, "filename": "a.png"},
        content=b"\x89PNG\r\n\x1a\n",
        headers={**clinician(), "Content-Type": "image/png"},
    )
    assert answer.status_code == 415
    assert "multipart/form-data" in answer.json()["error"]["message"]
    assert upstream.uploads == []


def test_a_multipart_body_that_ends_inside_the_file_is_an_incomplete_upload(api, upstream, patient):
    truncated = form_part("patient_id", patient) + file_head() + os.urandom(200_000)
    answer = api.post("/api/v1/slides", content=truncated, headers={**clinician(), **MULTIPART})
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "upload_incomplete"
    assert upstream.wait_for_upload_end()["outcome"] == "incomplete"
    # The caller's fault: the slide service's circuit (threshold 1 here) stays closed.
    upstream.upload_ended.clear()
    again = api.post(
        "/api/v1/slides",
        params={"patient_id": patient, "filename": "a.svs"},
        content=b"slide",
        headers={**clinician(), "Content-Type": "application/octet-stream"},
    )
    assert again.status_code == 201, again.text


def test_a_client_hanging_up_mid_upload_leaves_the_slide_service_an_incomplete_upload(
    upstream_server, upstream, patient
):
    with gateway(upstream_server) as client:
        host, port = client.base_url.host, client.base_url.port
        head = (
            f"POST /api/v1/slides?patient_id={patient}&filename=a.svs HTTP/1.1\r\n"
            f"Host: {host}\r\nAuthorization: {clinician()['Authorization']}\r\n"
            "Content-Type: application/octet-stream\r\nContent-Length: 4000000\r\n\r\n"
        ).encode()
        with socket.create_connection((host, port)) as connection:
            connection.sendall(head + os.urandom(1_000_000))
            wait_for(
                lambda: upstream.uploads and upstream.uploads[-1]["size"] > 0,
                DEADLINE_S,
                "the upload to reach the slide service",
                interval_s=0.01,
            )
        received = upstream.wait_for_upload_end()
    assert received["outcome"] == "incomplete"
    assert received["size"] < 4_000_000


def test_the_slide_limit_holds_while_streaming(upstream_server, upstream, patient):
    limit = 1024 * 1024
    with gateway(upstream_server, max_slide_bytes=limit) as client:
        declared = client.post(
            "/api/v1/slides",
            params={"patient_id": patient, "filename": "a.svs"},
            content=b"x" * (limit + 100 * 1024),
            headers={**clinician(), "Content-Type": "application/octet-stream"},
        )
        assert declared.status_code == 413  # by its Content-Length, before reading
        assert upstream.uploads == []

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it comes
            yield form_part("patient_id", patient) + file_head()
            for _ in range(4):
                yield os.urandom(512 * 1024)
            yield FILE_END

        streamed = client.post(
            "/api/v1/slides", content=chunks(), headers={**clinician(), **MULTIPART}
        )
    assert streamed.status_code == 413, streamed.text
    assert streamed.json()["error"]["code"] == "payload_too_large"
    received = upstream.wait_for_upload_end()
    assert received["outcome"] == "incomplete"
    assert received["size"] <= limit


def test_the_slide_service_error_is_relayed_with_its_status_and_code(api, upstream, patient):
    message = "This is a plain image, not a slide: assess it with POST /api/v1/predictions."
    upstream.answer = (415, envelope("not_a_slide", message))
    answer = api.post(
        "/api/v1/slides",
        params={"patient_id": patient, "filename": "photo.svs"},
        content=b"\x89PNG\r\n\x1a\n" + b"\x00" * 64,
        headers={**clinician(), "Content-Type": "application/octet-stream"},
    )
    assert answer.status_code == 415
    assert answer.json()["error"]["code"] == "not_a_slide"
    assert answer.json()["error"]["message"] == message


def test_tiles_with_a_grant_need_no_bearer_and_relay_the_cache_headers(api, upstream):
    slide_id = uuid.uuid4()
    tile = f"/api/v1/slides/{slide_id}/tiles/12/3_4.jpeg"
    answer = api.get(tile, params={"grant": "the.grant.jwt"})
    assert answer.status_code == 200, answer.text
    assert answer.content == TILE
    assert answer.headers["etag"] == TILE_ETAG
    assert answer.headers["cache-control"] == CACHE
    call = upstream.calls[-1]
    assert call["path"] == f"/slides/{slide_id}/tiles/12/3_4.jpeg"
    assert call["query"] == {"grant": "the.grant.jwt"}
    assert "authorization" not in call["headers"]

    cached = api.get(tile, params={"grant": "the.grant.jwt"}, headers={"If-None-Match": TILE_ETAG})
    assert cached.status_code == 304
    assert cached.content == b""
    assert cached.headers["etag"] == TILE_ETAG

    dzi = api.get(f"/api/v1/slides/{slide_id}/dzi", params={"grant": "g"})
    assert dzi.status_code == 200
    assert upstream.calls[-1]["query"] == {"grant": "g"}


def test_tiles_without_a_grant_or_a_bearer_are_refused_at_the_gateway(api, upstream):
    slide_id = uuid.uuid4()
    for path in (f"/api/v1/slides/{slide_id}/tiles/0/0_0.jpeg", f"/api/v1/slides/{slide_id}/dzi"):
        answer = api.get(path)
        assert answer.status_code == 401
        assert answer.json()["error"]["code"] == "not_authenticated"
    assert upstream.calls == []
    with_bearer = api.get(f"/api/v1/slides/{slide_id}/dzi", headers=bearer(mint_token("viewer")))
    assert with_bearer.status_code == 200
    assert upstream.calls[-1]["headers"]["authorization"].startswith("Bearer ")


def test_a_view_link_carries_the_grant_in_its_urls(api, upstream):
    slide_id = uuid.uuid4()
    answer = api.post(f"/api/v1/slides/{slide_id}/view-links", headers=bearer(mint_token("viewer")))
    assert answer.status_code == 200, answer.text
    link = answer.json()
    assert link["grant"] == "eyJhbGciOiJIUzI1NiJ9.eyJzaWQiOiJ4In0.c2ln+/="
    encoded = "eyJhbGciOiJIUzI1NiJ9.eyJzaWQiOiJ4In0.c2ln%2B%2F%3D"
    assert link["dzi_url"] == f"/api/v1/slides/{slide_id}/dzi?grant={encoded}"
    assert link["tile_url_template"] == (
        f"/api/v1/slides/{slide_id}/tiles/{{level}}/{{col}}_{{row}}.jpeg?grant={encoded}"
    )
    # The URL as given reaches the slide service with the grant as it was issued.
    tile = link["tile_url_template"].format(level=1, col=0, row=0)
    assert api.get(tile).status_code == 200
    assert upstream.calls[-1]["query"]["grant"] == link["grant"]


def test_tiles_count_against_their_own_limit_not_the_general_one(upstream_server, upstream):
    slide_id = uuid.uuid4()
    tile = f"/api/v1/slides/{slide_id}/tiles/0/0_0.jpeg"
    limits = {"rate_limit_slide_tiles": "5/minute", "rate_limit_general": "2/minute"}
    with gateway(upstream_server, **limits) as client:
        statuses = [client.get(tile, params={"grant": "g"}).status_code for _ in range(6)]
        general = [
            client.get(f"/api/v1/slides/{slide_id}", headers=clinician()).status_code
            for _ in range(3)
        ]
    assert statuses == [200] * 5 + [429]
    assert general == [404, 404, 429]


def test_only_admins_delete_and_read_associated_images(api, upstream):
    slide_id = uuid.uuid4()
    for role, expected in (("clinician", 403), ("admin", 204)):
        answer = api.delete(f"/api/v1/slides/{slide_id}", headers=bearer(mint_token(role)))
        assert answer.status_code == expected
    label = f"/api/v1/slides/{slide_id}/associated/label"
    assert api.get(label, headers=clinician()).status_code == 403
    assert [c["method"] for c in upstream.calls] == ["DELETE"]
    assert api.get(label, headers=bearer(mint_token("admin"))).status_code == 404
    assert upstream.calls[-1]["path"] == f"/slides/{slide_id}/associated/label"


def test_a_browser_on_an_allowed_origin_may_delete(upstream_server):
    origin = "https://clinic.example"
    with gateway(upstream_server, cors_origins=origin) as client:
        preflight = client.options(
            f"/api/v1/slides/{uuid.uuid4()}",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "DELETE",
                "Access-Control-Request-Headers": "Authorization, If-None-Match",
            },
        )
    assert preflight.status_code == 200, preflight.text
    assert "DELETE" in preflight.headers["access-control-allow-methods"]
    assert "if-none-match" in preflight.headers["access-control-allow-headers"].lower()


def test_a_slide_service_that_is_down_is_named(upstream_server, upstream):
    dead = f"http://127.0.0.1:{free_port()}"
    with gateway(upstream_server, slide_url=dead) as client:
        answer = client.get(f"/api/v1/slides/{uuid.uuid4()}", headers=clinician())
    assert answer.status_code == 503
    assert "slides service" in answer.json()["error"]["message"]
