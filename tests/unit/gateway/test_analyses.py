"""Slide analyses and their reviews through the gateway, against a fake slide service over
real HTTP: each route reaches its slide service path with the caller's token, query and body,
and the answer comes back as it was (status, envelope, content type, Location,
Content-Disposition, Cache-Control); roles and bodies are checked before anything is sent,
and the mask and heatmap take a view grant instead of a bearer token."""

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from devstack.postgres import free_port
from gateway.main import create_app
from gateway.settings import GatewaySettings
from tests.support import tokens
from tests.support.served import served
from tests.support.tokens import bearer, mint_token

DEADLINE_S = 30.0
PNG = b"\x89PNG\r\n\x1a\nfake"
ZIP = b"PK\x05\x06" + b"\x00" * 18
CACHE = "private, max-age=86400, immutable"


def envelope(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message, "request_id": "from-the-service"}}


class FakeSlides:
    """The slide service's analysis routes: records each call, answers what it is told to
    (`answers[path]`), else a plausible answer by the path's kind."""

    def __init__(self) -> None:
        self.calls: list[dict] = []
        self.answers: dict[str, Response] = {}
        app = FastAPI()

        @app.get("/ready")
        async def ready() -> dict:
            return {"status": "ready", "checks": {}}

        @app.api_route("/{rest:path}", methods=["GET", "POST"])
        async def anything(request: Request, rest: str) -> Response:
            path = request.url.path
            self.calls.append(
                {
                    "method": request.method,
                    "path": path,
                    "query": dict(request.query_params),
                    "headers": dict(request.headers),
                    "body": await request.body(),
                }
            )
            if path in self.answers:
                return self.answers[path]
            if path.endswith(".png"):
                return Response(PNG, media_type="image/png", headers={"Cache-Control": CACHE})
            if path.endswith(".dzi"):
                return Response("<Image/>", media_type="application/xml")
            return JSONResponse({"path": path})

        self.app = app


@pytest.fixture(scope="module")
def upstream_server():
    upstream = FakeSlides()
    with served(upstream.app) as url:
        yield upstream, url


@pytest.fixture
def upstream(upstream_server):
    upstream, _ = upstream_server
    upstream.calls.clear()
    upstream.answers.clear()
    return upstream


@contextmanager
def gateway(upstream_server, **overrides) -> Iterator[httpx.Client]:
    _, url = upstream_server
    dead = f"http://127.0.0.1:{free_port()}"
    settings = {
        "auth_url": dead,
        "inference_url": dead,
        "data_url": dead,
        "slide_url": url,
        "retry_attempts": 1,
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


def as_role(role: str) -> dict[str, str]:
    return bearer(mint_token(role))


# Fixed ids: they name parametrized tests, which every xdist worker must collect alike.
A, R, S = uuid.UUID(int=0xA), uuid.UUID(int=0xB), uuid.UUID(int=0xC)
READS = [
    f"/slides/{S}/analyses",
    "/analyses/stats",
    "/analyses/review-queue",
    f"/analyses/{A}",
    f"/analyses/{A}/regions",
    f"/analyses/{A}/regions.geojson",
    f"/analyses/{A}/regions/{R}/tiles/1.png",
    f"/analyses/{A}/mask.png",
    f"/analyses/{A}/heatmap.dzi",
    f"/analyses/{A}/heatmap_files/3/0_1.png",
    f"/analyses/{A}/reviews",
]


@pytest.mark.parametrize("path", READS)
def test_every_read_reaches_its_slide_service_path_with_the_token(api, upstream, path):
    headers = {**as_role("viewer"), "X-Request-ID": "analyses-read-1"}
    answer = api.get(f"/api/v1{path}", headers=headers)
    assert answer.status_code == 200, answer.text
    [call] = upstream.calls
    assert (call["method"], call["path"]) == ("GET", path)
    assert call["headers"]["authorization"] == headers["Authorization"]
    assert call["headers"]["x-request-id"] == "analyses-read-1"
    if path.endswith(".png"):
        assert answer.content == PNG
        assert answer.headers["content-type"] == "image/png"
        assert answer.headers["cache-control"] == CACHE


@pytest.mark.parametrize("path", READS)
def test_every_read_needs_a_token(api, upstream, path):
    answer = api.get(f"/api/v1{path}")
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "not_authenticated"
    assert upstream.calls == []


def test_the_query_string_is_passed_on(api, upstream):
    api.get(
        "/api/v1/analyses/review-queue",
        params={"limit": 5, "offset": 10},
        headers=as_role("viewer"),
    )
    api.get(
        f"/api/v1/analyses/{A}/regions/{R}/tiles/2.png",
        params={"overlay": "none"},
        headers=as_role("viewer"),
    )
    assert [c["query"] for c in upstream.calls] == [
        {"limit": "5", "offset": "10"},
        {"overlay": "none"},
    ]
    bad = [
        api.get("/api/v1/analyses/review-queue", params={"limit": 0}, headers=as_role("viewer")),
        api.get(
            f"/api/v1/analyses/{A}/regions/{R}/tiles/1.png",
            params={"overlay": "other"},
            headers=as_role("viewer"),
        ),
        api.get(f"/api/v1/analyses/{A}/regions/{R}/tiles/0.png", headers=as_role("viewer")),
        api.get("/api/v1/analyses/not-an-id", headers=as_role("viewer")),
    ]
    assert [b.status_code for b in bad] == [422] * 4
    assert len(upstream.calls) == 2


def test_starting_an_analysis_answers_202_with_its_location(api, upstream):
    analysis_id = str(uuid.uuid4())
    location = f"/api/v1/analyses/{analysis_id}"
    upstream.answers[f"/slides/{S}/analyses"] = JSONResponse(
        {"id": analysis_id, "status": "queued"}, 202, headers={"Location": location}
    )
    answer = api.post(f"/api/v1/slides/{S}/analyses", headers=as_role("clinician"))
    assert answer.status_code == 202, answer.text
    assert answer.headers["location"] == location
    assert answer.json()["id"] == analysis_id
    assert upstream.calls[-1]["method"] == "POST"


def test_the_slide_service_errors_come_back_as_they_are(api, upstream):
    message = "This slide is being analysed already (analysis 1)."
    upstream.answers[f"/slides/{S}/analyses"] = JSONResponse(
        envelope("analysis_in_progress", message), 409
    )
    upstream.answers[f"/analyses/{A}/regions"] = JSONResponse(
        envelope("analysis_not_finished", "The analysis has no results: it is running."), 409
    )
    upstream.answers[f"/analyses/{A}"] = JSONResponse(
        envelope("analysis_not_found", "No such analysis."), 404
    )
    upstream.answers["/analyses/stats"] = JSONResponse(
        envelope("too_many_analyses", "Wait."), 429, headers={"Retry-After": "30"}
    )
    started = api.post(f"/api/v1/slides/{S}/analyses", headers=as_role("clinician"))
    assert started.status_code == 409
    assert started.json()["error"]["code"] == "analysis_in_progress"
    assert started.json()["error"]["message"] == message
    regions = api.get(f"/api/v1/analyses/{A}/regions", headers=as_role("viewer"))
    assert (regions.status_code, regions.json()["error"]["code"]) == (409, "analysis_not_finished")
    missing = api.get(f"/api/v1/analyses/{A}", headers=as_role("viewer"))
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "analysis_not_found")
    limited = api.get("/api/v1/analyses/stats", headers=as_role("viewer"))
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "30"


def test_the_geojson_keeps_its_content_type_and_download_name(api, upstream):
    disposition = f'attachment; filename="regions-{A}.geojson"'
    upstream.answers[f"/analyses/{A}/regions.geojson"] = Response(
        '{"type":"FeatureCollection","features":[]}',
        media_type="application/geo+json",
        headers={"Content-Disposition": disposition},
    )
    answer = api.get(f"/api/v1/analyses/{A}/regions.geojson", headers=as_role("viewer"))
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/geo+json"
    assert answer.headers["content-disposition"] == disposition
    assert answer.json() == {"type": "FeatureCollection", "features": []}


@pytest.mark.parametrize(
    "path", [f"/analyses/{A}/mask.png", f"/analyses/{A}/heatmap.dzi", READS[9]]
)
def test_the_mask_and_heatmap_take_a_grant_instead_of_a_bearer(api, upstream, path):
    answer = api.get(f"/api/v1{path}", params={"grant": "the.grant.jwt"})
    assert answer.status_code == 200, answer.text
    [call] = upstream.calls
    assert call["path"] == path
    assert call["query"] == {"grant": "the.grant.jwt"}
    assert "authorization" not in call["headers"]


def test_heatmap_tiles_count_against_the_tiles_limit(upstream_server, upstream):
    tile = f"/api/v1{READS[9]}"
    limits = {"rate_limit_slide_tiles": "4/minute", "rate_limit_general": "2/minute"}
    with gateway(upstream_server, **limits) as client:
        statuses = [client.get(tile, params={"grant": "g"}).status_code for _ in range(5)]
    assert statuses == [200] * 4 + [429]


WRITES = [
    (f"/slides/{S}/analyses", None),
    (f"/analyses/{A}/cancel", None),
    (f"/analyses/{A}/regions/{R}/review", {"verdict": "agree"}),
    (f"/analyses/{A}/review", {"verdict": "benign"}),
]


@pytest.mark.parametrize(("path", "body"), WRITES)
def test_only_clinicians_and_admins_write(api, upstream, path, body):
    for headers, expected in (({}, 401), (as_role("viewer"), 403)):
        answer = api.post(f"/api/v1{path}", json=body, headers=headers)
        assert answer.status_code == expected
    assert upstream.calls == []
    for role in ("clinician", "admin"):
        assert api.post(f"/api/v1{path}", json=body, headers=as_role(role)).status_code == 200
    assert [c["path"] for c in upstream.calls] == [path, path]


def test_a_review_reaches_the_slide_service_with_its_body(api, upstream):
    review = {"id": str(uuid.uuid4()), "verdict": "correct", "corrected_label": "benign"}
    upstream.answers[f"/analyses/{A}/regions/{R}/review"] = JSONResponse(review, 201)
    body = {"verdict": "correct", "corrected_label": "benign", "comment": "stroma"}
    answer = api.post(
        f"/api/v1/analyses/{A}/regions/{R}/review", json=body, headers=as_role("clinician")
    )
    assert answer.status_code == 201
    assert answer.json() == review
    call = upstream.calls[-1]
    assert call["headers"]["content-type"] == "application/json"
    assert httpx.Response(200, content=call["body"]).json() == body

    slide = {"verdict": "indeterminate", "comment": "needs IHC"}
    api.post(f"/api/v1/analyses/{A}/review", json=slide, headers=as_role("clinician"))
    assert httpx.Response(200, content=upstream.calls[-1]["body"]).json() == slide


@pytest.mark.parametrize(
    "body",
    [
        {"verdict": "correct"},
        {"verdict": "agree", "corrected_label": "benign"},
        {"verdict": "nope"},
        {"verdict": "agree", "comment": "x" * 2001},
        {},
    ],
)
def test_a_bad_review_is_refused_before_the_slide_service(api, upstream, body):
    answer = api.post(
        f"/api/v1/analyses/{A}/regions/{R}/review", json=body, headers=as_role("clinician")
    )
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "validation_error"
    slide = api.post(
        f"/api/v1/analyses/{A}/review", json={"verdict": "agree"}, headers=as_role("clinician")
    )
    assert slide.status_code == 422
    assert upstream.calls == []


def test_the_export_is_for_admins_and_comes_back_as_a_zip_download(api, upstream):
    disposition = 'attachment; filename="region-tiles.zip"'
    upstream.answers["/exports/region-tiles.zip"] = Response(
        ZIP, media_type="application/zip", headers={"Content-Disposition": disposition}
    )
    for headers, expected in (({}, 401), (as_role("viewer"), 403), (as_role("clinician"), 403)):
        assert api.get("/api/v1/exports/region-tiles.zip", headers=headers).status_code == expected
    assert upstream.calls == []
    admin = as_role("admin")
    answer = api.get("/api/v1/exports/region-tiles.zip", headers=admin)
    assert answer.status_code == 200
    assert answer.content == ZIP
    assert answer.headers["content-type"] == "application/zip"
    assert answer.headers["content-disposition"] == disposition
    assert upstream.calls[-1]["headers"]["authorization"] == admin["Authorization"]

    upstream.answers["/exports/region-tiles.zip"] = JSONResponse(
        envelope("export_too_large", "Too many bytes."), 409
    )
    refused = api.get("/api/v1/exports/region-tiles.zip", headers=admin)
    assert (refused.status_code, refused.json()["error"]["code"]) == (409, "export_too_large")


def test_the_routes_are_in_the_api_docs(api):
    paths = api.get("/openapi.json").json()["paths"]
    for path in READS + [p for p, _ in WRITES] + ["/exports/region-tiles.zip"]:
        template = path.replace(str(A), "{analysis_id}").replace(str(R), "{region_id}")
        template = template.replace(str(S), "{slide_id}").replace("/1.png", "/{rank}.png")
        template = template.replace("/3/0_1.png", "/{level}/{col}_{row}.png")
        assert f"/api/v1{template}" in paths, template


def test_a_slide_service_that_is_down_is_named(upstream_server):
    dead = f"http://127.0.0.1:{free_port()}"
    with gateway(upstream_server, slide_url=dead) as client:
        answer = client.get(f"/api/v1/analyses/{A}", headers=as_role("viewer"))
    assert answer.status_code == 503
    assert "slides service" in answer.json()["error"]["message"]
