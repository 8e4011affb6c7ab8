"""The frontend server's own routes for whole slides: a tile relay and an upload relay.

Both exist so the browser never holds the user's bearer token and only ever talks to the
app's own origin (which is what keeps the app working unchanged behind an ngrok tunnel):

- `GET /slide-tiles/{slide_id}/dzi?grant=..` and
  `GET /slide-tiles/{slide_id}/tiles/{level}/{col}_{row}.jpeg?grant=..` pass a deep-zoom
  request to the gateway with the view grant the page obtained for that one slide (short-lived,
  read-only, signed by the slide service), and no bearer. Only these two shapes, with every
  path parameter checked, so this is not an open proxy.
- `GET /analysis-tiles/{analysis_id}/heatmap.dzi?grant=..`,
  `GET /analysis-tiles/{analysis_id}/heatmap_files/{level}/{col}_{row}.png?grant=..` and
  `GET /analysis-tiles/{analysis_id}/mask.png?grant=..` do the same for an analysis's heatmap
  and tissue mask, with a view grant of the analysed slide.
- `POST /slide-upload?ticket=..&filename=..` streams the browser's body to the gateway's
  `POST /api/v1/slides` with the bearer token the page left under a one-time ticket.

Streamlit runs these routes and the page scripts in one process, so the tickets live in
memory here (`TICKETS`); one frontend replica serves a browser session from start to end.
"""

import re
import secrets
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy

import httpx
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from frontend.utils.gateway_client import browser_address

TILE_PREFIX = "/slide-tiles"
ANALYSIS_PREFIX = "/analysis-tiles"
UPLOAD_PATH = "/slide-upload"
# A view grant is a compact JWS: three base64url parts. Anything else never leaves this server.
GRANT = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")
MAX_GRANT_CHARS = 4096
# Deep-zoom levels of a 100,000 px slide go to 17; columns and rows stay far below 10^6.
MAX_LEVEL = 64
MAX_TILE_INDEX = 1_000_000
UPLOAD_TICKET_TTL_S = 600.0
# What a browser may say its upload is; the gateway decides whether it is a slide.
UPLOAD_MEDIA_TYPES = frozenset({"application/octet-stream", "application/zip"})
# Deep-zoom answers relay these headers both ways, nothing else (no cookies, no credentials).
TILE_REQUEST_HEADERS = ("if-none-match", "x-request-id")
TILE_RESPONSE_HEADERS = ("content-type", "etag", "cache-control", "x-request-id")


def error(status: int, code: str, message: str) -> JSONResponse:
    """The project's error envelope, for what this server refuses itself."""
    body = {"error": {"code": code, "message": message, "request_id": uuid.uuid4().hex}}
    return JSONResponse(body, status_code=status)


# -- upload tickets -----------------------------------------------------------------------------


@dataclass(frozen=True)
class UploadTicket:
    bearer: str
    patient_id: str
    microns_per_pixel: float | None
    expires_at: float


class UploadTickets:
    """One-time, short-lived tickets naming an upload the page allowed: whose token, which
    patient, what resolution. The ticket is all the browser gets; it is spent on first use."""

    def __init__(self, ttl_s: float = UPLOAD_TICKET_TTL_S) -> None:
        self.ttl_s = ttl_s
        self._tickets: dict[str, UploadTicket] = {}
        self._lock = threading.Lock()  # pages run in script threads, the relay in the loop

    def issue(
        self,
        bearer: str,
        patient_id: str,
        microns_per_pixel: float | None = None,
        not_after: float | None = None,
    ) -> str:
        """A new ticket; `not_after` (the token's own expiry) caps its lifetime."""
        now = time.time()
        expires_at = now + self.ttl_s if not_after is None else min(now + self.ttl_s, not_after)
        ticket = secrets.token_urlsafe(32)
        with self._lock:
            self._tickets = {k: v for k, v in self._tickets.items() if v.expires_at > now}
            self._tickets[ticket] = UploadTicket(bearer, patient_id, microns_per_pixel, expires_at)
        return ticket

    def revoke(self, ticket: str | None) -> None:
        if ticket:
            with self._lock:
                self._tickets.pop(ticket, None)

    def spend(self, ticket: str) -> UploadTicket | None:
        """The ticket's upload, once: a second use, or a use after expiry, gets None."""
        with self._lock:
            found = self._tickets.pop(ticket, None)
        if found is None or found.expires_at <= time.time():
            return None
        return found


TICKETS = UploadTickets()


# -- the relays ---------------------------------------------------------------------------------


def _uuid(text: str) -> str | None:
    try:
        parsed = uuid.UUID(text)
    except ValueError:
        return None
    # Only the canonical spelling, so what reaches the gateway is exactly what was checked.
    return str(parsed) if str(parsed) == text else None


def _index(text: str, limit: int) -> int | None:
    if not text.isascii() or not text.isdigit() or len(text) > 7:
        return None
    value = int(text)
    return value if value <= limit else None


def _grant(request: Request) -> str | None:
    grants = request.query_params.getlist("grant")
    if len(grants) != 1 or len(grants[0]) > MAX_GRANT_CHARS or not GRANT.match(grants[0]):
        return None
    return grants[0]


class SlideRelay:
    """The two relays, talking to the gateway at `gateway_url` (through `transport` in tests)."""

    def __init__(
        self,
        gateway_url: str,
        timeout_s: float = 30.0,
        upload_timeout_s: float = 120.0,
        tickets: UploadTickets = TICKETS,
        transport: httpx.AsyncBaseTransport | None = None,
        forwarded_allow_ips: str = "127.0.0.1",
    ) -> None:
        self.gateway_url = gateway_url.rstrip("/")
        self.forwarded_allow_ips = forwarded_allow_ips
        self.timeout_s = timeout_s
        self.upload_timeout_s = upload_timeout_s
        self.tickets = tickets
        self.transport = transport
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        # Made on first use, inside the server's event loop; one pool for every browser.
        if self._client is None:
            self._client = httpx.AsyncClient(
                base_url=self.gateway_url,
                timeout=self.timeout_s,
                transport=self.transport,
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
                # One client serves every browser: a cookie the gateway set for one must
                # never ride along with another's requests.
                cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
            )
        return self._client

    def _forwarded_for(self, request: Request) -> dict[str, str]:
        """The browser's address for the gateway, which limits tiles and uploads per client:
        without it every browser would share the frontend's one budget."""
        peer = request.client.host if request.client else None
        address = browser_address(peer, request.headers, self.forwarded_allow_ips)
        return {"X-Forwarded-For": address} if address else {}

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def routes(self, base_path: str | None = None) -> list[Route]:
        """The relays at the root and, with Streamlit's `server.baseUrlPath` (`base_path`),
        under it too: the page's component asks below the path it was served from."""
        prefixes = [""]
        if base := (base_path or "").strip("/"):
            prefixes.append(f"/{base}")
        return [
            route
            for prefix in prefixes
            for route in (
                Route(f"{prefix}{TILE_PREFIX}/{{slide_id}}/dzi", self.dzi, methods=["GET"]),
                Route(
                    f"{prefix}{TILE_PREFIX}/{{slide_id}}/tiles/{{level}}/{{tile}}",
                    self.tile,
                    methods=["GET"],
                ),
                Route(f"{prefix}{UPLOAD_PATH}", self.upload, methods=["POST"]),
                Route(
                    f"{prefix}{ANALYSIS_PREFIX}/{{analysis_id}}/{{name}}",
                    self.analysis_image,
                    methods=["GET"],
                ),
                Route(
                    f"{prefix}{ANALYSIS_PREFIX}/{{analysis_id}}/heatmap_files/{{level}}/{{tile}}",
                    self.heatmap_tile,
                    methods=["GET"],
                ),
            )
        ]

    async def dzi(self, request: Request) -> Response:
        slide_id = _uuid(request.path_params["slide_id"])
        if slide_id is None:
            return error(404, "slide_not_found", "No such slide.")
        return await self._deep_zoom(request, f"/api/v1/slides/{slide_id}/dzi")

    async def tile(self, request: Request) -> Response:
        slide_id = _uuid(request.path_params["slide_id"])
        level = _index(request.path_params["level"], MAX_LEVEL)
        match = re.fullmatch(r"(\d{1,7})_(\d{1,7})\.jpeg", request.path_params["tile"])
        col = _index(match[1], MAX_TILE_INDEX) if match else None
        row = _index(match[2], MAX_TILE_INDEX) if match else None
        if slide_id is None or level is None or col is None or row is None:
            return error(404, "tile_not_found", "No such tile.")
        return await self._deep_zoom(
            request, f"/api/v1/slides/{slide_id}/tiles/{level}/{col}_{row}.jpeg"
        )

    async def analysis_image(self, request: Request) -> Response:
        """The heatmap's descriptor or the tissue mask: those two names, nothing else."""
        analysis_id = _uuid(request.path_params["analysis_id"])
        name = request.path_params["name"]
        if analysis_id is None or name not in ("heatmap.dzi", "mask.png"):
            return error(404, "not_found", "No such image of an analysis.")
        return await self._deep_zoom(request, f"/api/v1/analyses/{analysis_id}/{name}")

    async def heatmap_tile(self, request: Request) -> Response:
        analysis_id = _uuid(request.path_params["analysis_id"])
        level = _index(request.path_params["level"], MAX_LEVEL)
        match = re.fullmatch(r"(\d{1,7})_(\d{1,7})\.png", request.path_params["tile"])
        col = _index(match[1], MAX_TILE_INDEX) if match else None
        row = _index(match[2], MAX_TILE_INDEX) if match else None
        if analysis_id is None or level is None or col is None or row is None:
            return error(404, "tile_not_found", "No such tile.")
        return await self._deep_zoom(
            request, f"/api/v1/analyses/{analysis_id}/heatmap_files/{level}/{col}_{row}.png"
        )

    async def _deep_zoom(self, request: Request, path: str) -> Response:
        grant = _grant(request)
        if grant is None:
            return error(401, "invalid_view_grant", "This viewer link is not valid.")
        headers = {k: v for k in TILE_REQUEST_HEADERS if (v := request.headers.get(k))}
        headers |= self._forwarded_for(request)
        try:
            answer = await self.client.get(path, params={"grant": grant}, headers=headers)
        except httpx.TimeoutException:
            return error(504, "gateway_timeout", "The system did not answer in time.")
        except httpx.TransportError:
            return error(503, "gateway_unavailable", "The system cannot be reached right now.")
        kept = {k: v for k in TILE_RESPONSE_HEADERS if (v := answer.headers.get(k))}
        return Response(answer.content, status_code=answer.status_code, headers=kept)

    async def upload(self, request: Request) -> Response:
        tickets = request.query_params.getlist("ticket")
        found = self.tickets.spend(tickets[0]) if len(tickets) == 1 else None
        if found is None:
            return error(
                401,
                "invalid_upload_ticket",
                "This upload form has expired or was already used; reload the page and try again.",
            )
        filename = request.query_params.get("filename", "")
        if not filename or len(filename) > 255:
            return error(422, "invalid_filename", "The file needs a name of 1 to 255 characters.")
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type not in UPLOAD_MEDIA_TYPES:
            media_type = "application/octet-stream"
        headers = {"Authorization": f"Bearer {found.bearer}", "Content-Type": media_type}
        headers |= self._forwarded_for(request)
        if length := request.headers.get("content-length"):
            # Passed on, so the gateway and the slide service can tell a truncated upload.
            headers["Content-Length"] = length
        params: dict[str, str] = {"patient_id": found.patient_id, "filename": filename}
        if found.microns_per_pixel is not None:
            params["microns_per_pixel"] = repr(found.microns_per_pixel)
        timeout = httpx.Timeout(self.timeout_s, read=self.upload_timeout_s)
        try:
            answer = await self.client.post(
                "/api/v1/slides",
                params=params,
                content=_body(request),
                headers=headers,
                timeout=timeout,
            )
        except ClientDisconnect:
            # The browser went away mid-file: the gateway saw a short body and kept nothing.
            return error(400, "upload_incomplete", "The upload stopped before the file was sent.")
        except httpx.TimeoutException:
            return error(504, "gateway_timeout", "The system did not answer in time.")
        except httpx.TransportError:
            return error(503, "gateway_unavailable", "The system cannot be reached right now.")
        kept = {k: v for k in ("content-type", "x-request-id") if (v := answer.headers.get(k))}
        return Response(answer.content, status_code=answer.status_code, headers=kept)


async def _body(request: Request) -> AsyncIterator[bytes]:
    """The browser's body as it arrives, chunk by chunk, never held whole."""
    async for chunk in request.stream():
        if chunk:
            yield chunk
