"""The frontend server's slide relays (`frontend/slide_relay.py`) against a fake gateway ASGI
app: which requests they pass on, with what, and what they refuse."""

import asyncio
import os
import subprocess
import sys
import time

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from devstack import ROOT
from devstack.postgres import free_port
from frontend.slide_relay import SlideRelay, UploadTickets
from tests.support.launcher import RESTART_TIMEOUT_S, get, wait_for
from tests.support.waiting import until

SLIDE = "905c52f4-16f3-4a7d-969e-f06382016e33"  # fixed: test ids must match across workers
ANALYSIS = "0b0c5a53-7f6e-4f43-9b8e-5d5f2f0e7a11"
GRANT = "eyJhbGciOiJIUzI1NiJ9.eyJzaWQiOiJ4In0.c2lnbmF0dXJl"
ETAG = '"tile-1"'
CACHE = "private, max-age=86400, immutable"


class FakeGateway:
    """The gateway's deep-zoom and upload routes, recording what reached them."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.uploaded: list[bytes] = []  # the chunks of the last upload, as they arrived
        self.first_chunk = asyncio.Event()
        self.app = Starlette(
            routes=[
                Route("/api/v1/slides/{slide_id}/dzi", self.deep_zoom),
                Route("/api/v1/slides/{slide_id}/tiles/{level}/{tile}", self.deep_zoom),
                Route("/api/v1/slides", self.upload, methods=["POST"]),
                Route("/api/v1/analyses/{analysis_id}/heatmap.dzi", self.deep_zoom),
                Route("/api/v1/analyses/{analysis_id}/mask.png", self.deep_zoom),
                Route(
                    "/api/v1/analyses/{analysis_id}/heatmap_files/{level}/{tile}", self.deep_zoom
                ),
            ]
        )

    async def deep_zoom(self, request: Request) -> Response:
        self.requests.append(request)
        if request.query_params.get("grant") != GRANT:
            return JSONResponse(
                {"error": {"code": "invalid_view_grant", "message": "no", "request_id": "r"}},
                status_code=401,
            )
        headers = {"ETag": ETAG, "Cache-Control": CACHE, "Set-Cookie": "gateway=1"}
        if request.headers.get("if-none-match") == ETAG:
            return Response(status_code=304, headers=headers)
        path = request.url.path
        media = "application/xml" if path.endswith("dzi") else "image/jpeg"
        media = "image/png" if path.endswith(".png") else media
        return Response(b"tile bytes", media_type=media, headers=headers)

    async def upload(self, request: Request) -> Response:
        self.requests.append(request)
        self.uploaded = []
        async for chunk in request.stream():
            if chunk:
                self.uploaded.append(chunk)
                self.first_chunk.set()
        if request.query_params["filename"] == "photo.png":
            error = {"code": "not_a_slide", "message": "Use predictions.", "request_id": "r"}
            return JSONResponse({"error": error}, status_code=415)
        return JSONResponse({"id": SLIDE, "size_bytes": sum(map(len, self.uploaded))}, 201)


@pytest.fixture
def gateway() -> FakeGateway:
    return FakeGateway()


@pytest.fixture
def tickets() -> UploadTickets:
    return UploadTickets(ttl_s=60)


@pytest.fixture
async def browser(gateway, tickets):
    """The browser's view: the frontend server with only its relay routes."""
    relay = SlideRelay(
        "http://gateway.test", tickets=tickets, transport=httpx.ASGITransport(gateway.app)
    )
    frontend = Starlette(routes=relay.routes())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(frontend), base_url="http://frontend.test"
    ) as client:
        yield client
    await relay.aclose()


# -- tiles -------------------------------------------------------------------------------------


async def test_tiles_and_descriptor_reach_the_gateway_with_the_grant_and_no_credential(
    browser, gateway
):
    headers = {"Authorization": "Bearer user-token", "Cookie": "_streamlit_xsrf=secret"}
    dzi = await browser.get(f"/slide-tiles/{SLIDE}/dzi", params={"grant": GRANT}, headers=headers)
    tile = await browser.get(
        f"/slide-tiles/{SLIDE}/tiles/12/3_4.jpeg", params={"grant": GRANT}, headers=headers
    )
    assert (dzi.status_code, dzi.headers["content-type"]) == (200, "application/xml")
    assert (tile.status_code, tile.headers["content-type"]) == (200, "image/jpeg")
    assert tile.content == b"tile bytes"
    assert tile.headers["etag"] == ETAG and tile.headers["cache-control"] == CACHE
    assert "set-cookie" not in tile.headers  # the gateway's cookies stay on this side
    assert [r.url.path for r in gateway.requests] == [
        f"/api/v1/slides/{SLIDE}/dzi",
        f"/api/v1/slides/{SLIDE}/tiles/12/3_4.jpeg",
    ]
    for request in gateway.requests:
        assert dict(request.query_params) == {"grant": GRANT}
        assert "authorization" not in request.headers
        assert "cookie" not in request.headers


@pytest.mark.parametrize("base_path", ["cds", "/cds/"])
async def test_the_relays_answer_under_streamlits_base_path_too(gateway, tickets, base_path):
    """With server.baseUrlPath the page's component asks below it (/cds/slide-tiles/..)."""
    relay = SlideRelay(
        "http://gateway.test", tickets=tickets, transport=httpx.ASGITransport(gateway.app)
    )
    frontend = Starlette(routes=relay.routes(base_path))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(frontend), base_url="http://frontend.test"
    ) as browser:
        for prefix in ["/cds", ""]:
            tile = await browser.get(
                f"{prefix}/slide-tiles/{SLIDE}/tiles/12/3_4.jpeg", params={"grant": GRANT}
            )
            assert tile.status_code == 200, (prefix, tile.text)
            dzi = await browser.get(f"{prefix}/slide-tiles/{SLIDE}/dzi", params={"grant": GRANT})
            assert dzi.status_code == 200, (prefix, dzi.text)
            ticket = tickets.issue("user-token", "patient-1")
            upload = await browser.post(
                f"{prefix}/slide-upload",
                params={"ticket": ticket, "filename": "a.svs"},
                content=b"slide",
                headers={"Content-Type": "application/octet-stream"},
            )
            assert upload.status_code == 201, (prefix, upload.text)
        assert (await browser.get(f"/other/slide-tiles/{SLIDE}/dzi")).status_code == 404
    await relay.aclose()


async def test_a_cached_tile_is_answered_not_modified(browser):
    tile = f"/slide-tiles/{SLIDE}/tiles/0/0_0.jpeg"
    answer = await browser.get(tile, params={"grant": GRANT}, headers={"If-None-Match": ETAG})
    assert answer.status_code == 304 and answer.content == b""
    assert answer.headers["etag"] == ETAG


async def test_the_gateways_refusal_of_a_grant_reaches_the_browser(browser):
    other = GRANT.replace("c2ln", "b3Ro")
    answer = await browser.get(f"/slide-tiles/{SLIDE}/dzi", params={"grant": other})
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "invalid_view_grant"


@pytest.mark.parametrize(
    "path",
    [
        "/slide-tiles/not-a-uuid/dzi",
        f"/slide-tiles/{SLIDE.upper()}/dzi",  # one spelling only
        f"/slide-tiles/{SLIDE}/tiles/x/0_0.jpeg",
        f"/slide-tiles/{SLIDE}/tiles/65/0_0.jpeg",
        f"/slide-tiles/{SLIDE}/tiles/1/0_0.png",
        f"/slide-tiles/{SLIDE}/tiles/1/-1_0.jpeg",
        f"/slide-tiles/{SLIDE}/tiles/1/0_99999999.jpeg",
        f"/slide-tiles/{SLIDE}/tiles/1/0_0.jpeg%2F..%2F..%2Fthumbnail",
        f"/slide-tiles/{SLIDE}/tiles/1/%D9%A1_0.jpeg",  # a digit, but not an ASCII one
        f"/slide-tiles/{SLIDE}/thumbnail",
        f"/slide-tiles/{SLIDE}/associated/label",
        f"/slide-tiles/{SLIDE}/../../api/v1/slides",
    ],
)
async def test_nothing_but_deep_zoom_paths_is_relayed(browser, gateway, path):
    answer = await browser.get(path, params={"grant": GRANT})
    assert answer.status_code in (404, 405)
    assert gateway.requests == []


async def test_an_analysiss_heatmap_and_mask_reach_the_gateway_with_the_grant_only(
    browser, gateway
):
    headers = {"Authorization": "Bearer user-token", "Cookie": "_streamlit_xsrf=secret"}
    base = f"/analysis-tiles/{ANALYSIS}"
    answers = [
        await browser.get(f"{base}/{path}", params={"grant": GRANT}, headers=headers)
        for path in ["heatmap.dzi", "heatmap_files/9/2_1.png", "mask.png"]
    ]
    assert [(a.status_code, a.headers["content-type"]) for a in answers] == [
        (200, "application/xml"),
        (200, "image/png"),
        (200, "image/png"),
    ]
    assert all(a.headers["cache-control"] == CACHE for a in answers)
    assert [r.url.path for r in gateway.requests] == [
        f"/api/v1/analyses/{ANALYSIS}/heatmap.dzi",
        f"/api/v1/analyses/{ANALYSIS}/heatmap_files/9/2_1.png",
        f"/api/v1/analyses/{ANALYSIS}/mask.png",
    ]
    for request in gateway.requests:
        assert dict(request.query_params) == {"grant": GRANT}
        assert "authorization" not in request.headers
        assert "cookie" not in request.headers


@pytest.mark.parametrize(
    "path",
    [
        f"/analysis-tiles/{ANALYSIS}/regions.geojson",
        f"/analysis-tiles/{ANALYSIS}/regions",
        f"/analysis-tiles/{ANALYSIS}/cancel",
        f"/analysis-tiles/{ANALYSIS}/heatmap_files/9/2_1.jpeg",
        f"/analysis-tiles/{ANALYSIS}/heatmap_files/x/2_1.png",
        f"/analysis-tiles/{ANALYSIS}/heatmap_files/65/2_1.png",
        f"/analysis-tiles/{ANALYSIS.upper()}/mask.png",
        "/analysis-tiles/stats/mask.png",
        f"/analysis-tiles/{ANALYSIS}/../../api/v1/analyses/stats",
    ],
)
async def test_nothing_but_an_analysiss_heatmap_and_mask_is_relayed(browser, gateway, path):
    answer = await browser.get(path, params={"grant": GRANT})
    assert answer.status_code in (404, 405)
    assert gateway.requests == []


async def test_an_analysis_image_without_a_valid_grant_is_refused_here(browser, gateway):
    for query in [{}, {"grant": "not a jwt"}]:
        answer = await browser.get(f"/analysis-tiles/{ANALYSIS}/mask.png", params=query)
        assert answer.status_code == 401
        assert answer.json()["error"]["code"] == "invalid_view_grant"
    assert gateway.requests == []


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"grant": ""},
        {"grant": "not a jwt"},
        {"grant": "a.b"},
        {"grant": "a.b.c&x=1"},
        {"grant": "a." * 3000 + "b.c"},
        [("grant", GRANT), ("grant", GRANT)],
    ],
)
async def test_a_missing_or_malformed_grant_is_refused_here(browser, gateway, query):
    answer = await browser.get(f"/slide-tiles/{SLIDE}/tiles/1/0_0.jpeg", params=query)
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "invalid_view_grant"
    assert gateway.requests == []


async def test_tiles_when_the_gateway_is_away(tickets):
    relay = SlideRelay("http://127.0.0.1:9", tickets=tickets, timeout_s=5)
    frontend = Starlette(routes=relay.routes())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(frontend), base_url="http://frontend.test"
    ) as browser:
        answer = await browser.get(f"/slide-tiles/{SLIDE}/dzi", params={"grant": GRANT})
    await relay.aclose()
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "gateway_unavailable"


@pytest.mark.parametrize(
    ("peer", "claimed", "seen"),
    [
        ("127.0.0.1", "203.0.113.7", "203.0.113.7"),  # behind our proxy: its word is taken
        ("198.51.100.9", "203.0.113.7", "198.51.100.9"),  # anyone else's claim is not
    ],
)
async def test_the_gateway_learns_which_browser_asked(gateway, tickets, peer, claimed, seen):
    # The gateway limits tiles and uploads per client address: through the relay, every
    # browser would otherwise count against the frontend's one address.
    relay = SlideRelay(
        "http://gateway.test", tickets=tickets, transport=httpx.ASGITransport(gateway.app)
    )
    frontend = httpx.ASGITransport(Starlette(routes=relay.routes()), client=(peer, 40000))
    async with httpx.AsyncClient(transport=frontend, base_url="http://frontend.test") as browser:
        forwarded = {"X-Forwarded-For": claimed}
        await browser.get(f"/slide-tiles/{SLIDE}/dzi", params={"grant": GRANT}, headers=forwarded)
        ticket = tickets.issue("user-token", "patient-1", None)
        upload = await browser.post(
            "/slide-upload",
            params={"ticket": ticket, "filename": "a.svs"},
            content=b"slide",
            headers={"Content-Type": "application/octet-stream"} | forwarded,
        )
    await relay.aclose()
    assert upload.status_code == 201, upload.text
    assert [r.headers.get("x-forwarded-for") for r in gateway.requests] == [seen, seen]


# -- uploads -----------------------------------------------------------------------------------


async def test_an_upload_carries_the_tickets_token_patient_and_resolution(
    browser, gateway, tickets
):
    ticket = tickets.issue("user-token", "patient-1", 0.25)
    answer = await browser.post(
        "/slide-upload",
        params={"ticket": ticket, "filename": "case 1.svs"},
        content=b"slide" * 1000,
        headers={"Content-Type": "application/octet-stream", "Authorization": "Bearer forged"},
    )
    assert answer.status_code == 201, answer.text
    assert answer.json() == {"id": SLIDE, "size_bytes": 5000}
    [request] = gateway.requests
    assert request.headers["authorization"] == "Bearer user-token"
    assert request.headers["content-type"] == "application/octet-stream"
    assert request.headers["content-length"] == "5000"
    assert dict(request.query_params) == {
        "patient_id": "patient-1",
        "filename": "case 1.svs",
        "microns_per_pixel": "0.25",
    }
    assert b"".join(gateway.uploaded) == b"slide" * 1000


async def test_a_zip_stays_a_zip_and_anything_else_is_raw_bytes(browser, gateway, tickets):
    for sent, passed in [("application/zip", "application/zip"), ("text/html", None)]:
        ticket = tickets.issue("user-token", "patient-1")
        await browser.post(
            "/slide-upload",
            params={"ticket": ticket, "filename": "s.zip"},
            content=b"PK",
            headers={"Content-Type": sent},
        )
        request = gateway.requests[-1]
        assert request.headers["content-type"] == (passed or "application/octet-stream")
        assert "microns_per_pixel" not in request.query_params


async def test_a_ticket_is_spent_by_its_first_upload(browser, gateway, tickets):
    ticket = tickets.issue("user-token", "patient-1")
    first = await browser.post(
        "/slide-upload", params={"ticket": ticket, "filename": "a.svs"}, content=b"x"
    )
    again = await browser.post(
        "/slide-upload", params={"ticket": ticket, "filename": "a.svs"}, content=b"x"
    )
    assert first.status_code == 201
    assert again.status_code == 401
    assert again.json()["error"]["code"] == "invalid_upload_ticket"
    assert len(gateway.requests) == 1


async def test_an_expired_revoked_or_unknown_ticket_uploads_nothing(browser, gateway, tickets):
    expired = tickets.issue("user-token", "patient-1", not_after=time.time() - 1)
    revoked = tickets.issue("user-token", "patient-1")
    tickets.revoke(revoked)
    for query in [
        {"ticket": expired, "filename": "a.svs"},
        {"ticket": revoked, "filename": "a.svs"},
        {"ticket": "guessed", "filename": "a.svs"},
        {"filename": "a.svs"},
    ]:
        answer = await browser.post("/slide-upload", params=query, content=b"x")
        assert answer.status_code == 401, query
        assert answer.json()["error"]["code"] == "invalid_upload_ticket"
    assert gateway.requests == []


def test_a_ticket_lives_no_longer_than_its_ttl_or_the_token():
    tickets = UploadTickets(ttl_s=0.0)
    assert tickets.spend(tickets.issue("token", "patient")) is None
    tickets = UploadTickets(ttl_s=600)
    lasting = tickets.issue("token", "patient", not_after=time.time() + 3600)
    assert tickets.spend(lasting) is not None
    assert tickets.spend(tickets.issue("token", "patient", not_after=time.time() - 1)) is None


async def test_an_upload_without_a_file_name_is_refused_and_spends_the_ticket(
    browser, gateway, tickets
):
    for name in ["", "x" * 256]:
        ticket = tickets.issue("user-token", "patient-1")
        query = {"ticket": ticket, "filename": name}
        answer = await browser.post("/slide-upload", params=query, content=b"x")
        assert answer.status_code == 422
        assert answer.json()["error"]["code"] == "invalid_filename"
        assert tickets.spend(ticket) is None
    assert gateway.requests == []


async def test_the_gateways_refusal_of_an_upload_reaches_the_browser(browser, tickets):
    ticket = tickets.issue("user-token", "patient-1")
    answer = await browser.post(
        "/slide-upload", params={"ticket": ticket, "filename": "photo.png"}, content=b"\x89PNG"
    )
    assert answer.status_code == 415
    assert answer.json()["error"]["code"] == "not_a_slide"


async def test_an_upload_streams_to_the_gateway_as_it_arrives(browser, gateway, tickets):
    """The gateway has the first chunk while the browser still holds the second: the relay
    never waits for the whole file."""
    ticket = tickets.issue("user-token", "patient-1")

    async def body():
        yield b"first chunk"
        await until(gateway.first_chunk.is_set, "the gateway to receive the first chunk")
        yield b"second chunk"

    answer = await browser.post(
        "/slide-upload",
        params={"ticket": ticket, "filename": "big.svs"},
        content=body(),
        headers={"Content-Length": "23"},
    )
    assert answer.status_code == 201, answer.text
    assert gateway.uploaded == [b"first chunk", b"second chunk"]
    assert gateway.requests[0].headers["content-length"] == "23"


# -- the server ----------------------------------------------------------------------------------


def test_python_m_frontend_serves_the_app_and_its_relays_on_one_origin():
    """`python -m frontend` as `make run` starts it: Streamlit's own routes and the relays,
    the relays answering by themselves when the gateway is away."""
    port = free_port()
    env = {
        **os.environ,
        "FRONTEND_PORT": str(port),
        "FRONTEND_GATEWAY_URL": f"http://127.0.0.1:{free_port()}",  # nothing listens there
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "frontend"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(
            lambda: (r := get(f"{base}/_stcore/health")) is not None and r.status_code == 200,
            RESTART_TIMEOUT_S,
            "the frontend's /_stcore/health",
        )
        assert "<html" in httpx.get(f"{base}/", timeout=10).text.lower()
        invalid = httpx.get(f"{base}/slide-tiles/{SLIDE}/dzi", timeout=10)
        assert invalid.status_code == 401
        assert invalid.json()["error"]["code"] == "invalid_view_grant"
        away = httpx.get(f"{base}/slide-tiles/{SLIDE}/dzi", params={"grant": GRANT}, timeout=30)
        assert away.status_code == 503
        upload = httpx.post(f"{base}/slide-upload", params={"ticket": "x"}, content=b"x")
        assert upload.json()["error"]["code"] == "invalid_upload_ticket"
    finally:
        server.terminate()
        server.wait(timeout=30)
