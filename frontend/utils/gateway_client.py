"""The frontend's only way out: a synchronous client for the gateway's `/api/v1`.

Streamlit runs the page script on its server, so every call goes from there to the gateway;
the browser only ever talks to Streamlit (relative URLs), which is what lets the app work
behind a tunnel. Every failure becomes a `GatewayError` whose message is meant for people.
"""

import contextlib
import ipaddress
import logging
import time
import uuid
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import httpx

logger = logging.getLogger("frontend.gateway_client")

# Refresh a little before the access token runs out, so a page never fails half-way.
REFRESH_MARGIN_S = 30
SESSION_KEY = "gateway_session"
REVIEW_ORDER = "review_priority"  # the prediction listing's `order` for the review queue


class GatewayError(Exception):
    """The gateway could not be reached or answered with an error; `message` is for people."""

    def __init__(
        self,
        message: str,
        status_code: int | None = None,
        request_id: str | None = None,
        code: str | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.request_id = request_id
        self.code = code


class SessionExpired(GatewayError):
    """The sign-in is no longer valid (refresh refused); the user must sign in again."""


@dataclass
class SystemStatus:
    ready: bool
    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    message: str | None = None


@dataclass
class Session:
    """A signed-in user's token pair and who they are."""

    access_token: str
    refresh_token: str
    access_expires_at: float
    refresh_expires_at: float
    user: dict[str, Any]

    @property
    def role(self) -> str:
        return self.user["role"]


# What a status means to a clinician, when the gateway's own message is missing.
STATUS_MESSAGES = {
    401: "You are not signed in.",
    403: "Your role does not allow this.",
    404: "Not found.",
    413: "The file is too large.",
    415: "This file is not an image the system can read.",
    429: "Too many requests; please wait a moment.",
    503: "A service is unavailable; please try again shortly.",
    504: "A service did not answer in time; please try again.",
}


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise GatewayError(
            f"The gateway answered {response.status_code} with a body that is not JSON.",
            response.status_code,
            response.headers.get("x-request-id"),
        ) from exc


def _error_from(response: httpx.Response) -> GatewayError:
    request_id = response.headers.get("x-request-id")
    try:
        error = response.json()["error"]
        message, code = str(error["message"]), str(error.get("code") or "")
        request_id = error.get("request_id") or request_id
    except (ValueError, KeyError, TypeError):
        message = STATUS_MESSAGES.get(
            response.status_code, f"The gateway answered {response.status_code}."
        )
        code = None
    if response.status_code == 429 and "retry-after" in response.headers:
        message = f"{message} (retry in {response.headers['retry-after']} s)"
    return GatewayError(message, response.status_code, request_id, code)


def review_body(
    verdict: str, corrected_label: str | None = None, comment: str | None = None
) -> dict[str, Any]:
    """A review's JSON body: the verdict, and the label and comment only when given."""
    body: dict[str, Any] = {"verdict": verdict}
    if corrected_label:
        body["corrected_label"] = corrected_label
    if comment:
        body["comment"] = comment
    return body


class GatewayClient:
    """One user's connection to the gateway. With `store` (Streamlit's session state, or any
    mapping) it keeps that user's `Session` there and refreshes it silently."""

    def __init__(
        self,
        base_url: str,
        timeout_s: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        store: MutableMapping[str, Any] | None = None,
        client_address: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout_s = timeout_s
        self._transport = transport
        self._client = httpx.Client(base_url=self.base_url, timeout=timeout_s, transport=transport)
        self._store: MutableMapping[str, Any] = store if store is not None else {}
        # The browser's address, so the gateway's per-address limits see each user, not us.
        self._forwarded_for = client_address if isinstance(client_address, str) else None

    # -- plumbing ---------------------------------------------------------------------------

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        request_id = uuid.uuid4().hex
        headers = {"X-Request-ID": request_id, **kwargs.pop("headers", {})}
        if self._forwarded_for:
            headers["X-Forwarded-For"] = self._forwarded_for
        try:
            return self._client.request(method, path, headers=headers, **kwargs)
        except httpx.TimeoutException as exc:
            raise GatewayError(
                "The system did not answer in time; please try again.", request_id=request_id
            ) from exc
        except httpx.TransportError as exc:
            # The internal address is for the operators' log, not for the people using the app.
            logger.warning(
                "gateway unreachable",
                extra={"gateway_url": self.base_url, "error": type(exc).__name__},
            )
            raise GatewayError(
                "The system cannot be reached right now; please try again in a moment.",
                request_id=request_id,
            ) from exc

    @property
    def session(self) -> Session | None:
        return self._store.get(SESSION_KEY)

    def end_session_if_expired(self) -> bool:
        """Drop a session whose refresh token has run out (no call needed to know)."""
        session = self.session
        if session is not None and session.refresh_expires_at <= time.time():
            self._store.pop(SESSION_KEY, None)
            return True
        return False

    def fresh_session(self) -> Session:
        """The session, its access token refreshed first when it is about to run out."""
        session = self.session
        if session is None:
            raise SessionExpired("Please sign in.", 401)
        if session.access_expires_at - time.time() < REFRESH_MARGIN_S:
            try:
                session = self.refresh()
            except SessionExpired:
                raise
            except GatewayError:
                # Auth is away for a moment: the current token may still do for this call.
                if session.access_expires_at <= time.time():
                    raise
        return session

    def _authorized(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        session = self.fresh_session()
        headers = {**kwargs.pop("headers", {}), "Authorization": f"Bearer {session.access_token}"}
        response = self._send(method, path, headers=headers, **kwargs)
        if response.status_code == 401:
            # Revoked or expired early (a key rotation, a clock step): one refresh, one retry.
            session = self.refresh()
            headers["Authorization"] = f"Bearer {session.access_token}"
            response = self._send(method, path, headers=headers, **kwargs)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._authorized(method, path, **kwargs)
        if response.status_code >= 400:
            raise _error_from(response)
        if response.status_code == 204 or not response.content:
            return None
        return _body(response)

    def _bytes(self, path: str, **kwargs: Any) -> bytes:
        response = self._authorized("GET", path, **kwargs)
        if response.status_code >= 400:
            raise _error_from(response)
        return response.content

    def _start_session(self, tokens: dict[str, Any], user: dict[str, Any]) -> Session:
        if not isinstance(tokens, dict) or not {
            "access_token",
            "refresh_token",
            "expires_in",
            "refresh_expires_in",
        } <= set(tokens):
            raise GatewayError("The gateway's sign-in answer is incomplete.")
        session = Session(
            access_token=tokens["access_token"],
            refresh_token=tokens["refresh_token"],
            access_expires_at=time.time() + float(tokens["expires_in"]),
            refresh_expires_at=time.time() + float(tokens["refresh_expires_in"]),
            user=user,
        )
        self._store[SESSION_KEY] = session
        return session

    # -- sign-in ----------------------------------------------------------------------------

    def login(self, email: str, password: str) -> Session:
        response = self._send(
            "POST", "/api/v1/auth/token", data={"username": email, "password": password}
        )
        if response.status_code == 401:
            raise GatewayError("Wrong email or password.", 401, code="invalid_credentials")
        if response.status_code >= 400:
            raise _error_from(response)
        tokens = _body(response)
        me = self._send(
            "GET",
            "/api/v1/auth/me",
            headers={"Authorization": f"Bearer {tokens['access_token']}"},
        )
        if me.status_code >= 400:
            raise _error_from(me)
        return self._start_session(tokens, user=_body(me))

    def refresh(self) -> Session:
        """A new token pair for the stored refresh token. A refused one ends the session."""
        session = self.session
        if session is None:
            raise SessionExpired("Please sign in.", 401)
        response = self._send(
            "POST", "/api/v1/auth/refresh", json={"refresh_token": session.refresh_token}
        )
        if response.status_code in (401, 403):
            self._store.pop(SESSION_KEY, None)
            raise SessionExpired("Your session has expired; please sign in again.", 401)
        if response.status_code >= 400:
            raise _error_from(response)
        return self._start_session(_body(response), user=session.user)

    def logout(self) -> None:
        """End the session at the auth service too (its refresh tokens stop working)."""
        session = self._store.pop(SESSION_KEY, None)
        if session is None:
            return
        # Signed out here regardless; if the gateway is away the refresh token expires alone.
        with contextlib.suppress(GatewayError):
            self._send(
                "POST",
                "/api/v1/auth/logout",
                json={"refresh_token": session.refresh_token},
                headers={"Authorization": f"Bearer {session.access_token}"},
            )

    # -- the API ----------------------------------------------------------------------------

    def system_status(self) -> SystemStatus:
        """The gateway's `/ready`: whether every service behind it is up, and why not."""
        response = self._send("GET", "/ready")
        try:
            body = response.json()
        except ValueError as exc:
            raise GatewayError(
                f"The gateway answered {response.status_code} with a body that is not JSON.",
                status_code=response.status_code,
            ) from exc
        if response.status_code not in (200, 503) or "checks" not in body:
            raise GatewayError(
                f"The gateway answered {response.status_code} to a status check.",
                status_code=response.status_code,
            )
        message = body.get("error", {}).get("message")
        return SystemStatus(
            ready=response.status_code == 200, services=body["checks"], message=message
        )

    def predict(
        self,
        filename: str,
        content: bytes,
        content_type: str,
        patient_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._json(
            "POST",
            "/api/v1/predictions",
            files={"file": (filename, content, content_type)},
            data={"patient_id": patient_id} if patient_id else None,
            headers=headers,
        )

    def predictions(self, **filters: Any) -> dict[str, Any]:
        params = {k: v for k, v in filters.items() if v is not None}
        return self._json("GET", "/api/v1/predictions", params=params)

    def review_queue(self, limit: int = 50) -> dict[str, Any]:
        """Predictions the signed-in user has not reviewed, in the gateway's review order:
        indeterminate ones and those another reviewer disagreed with first (a second read),
        then the rest, newest first within each."""
        return self.predictions(reviewed_by_me=False, order=REVIEW_ORDER, limit=limit)

    def prediction(self, prediction_id: str) -> dict[str, Any]:
        return self._json("GET", f"/api/v1/predictions/{prediction_id}")

    def prediction_image(self, prediction_id: str) -> bytes:
        return self._bytes(f"/api/v1/predictions/{prediction_id}/image")

    def heatmap(self, prediction_id: str) -> bytes:
        return self._bytes(f"/api/v1/predictions/{prediction_id}/heatmap")

    def review(
        self,
        prediction_id: str,
        verdict: str,
        corrected_label: str | None = None,
        comment: str | None = None,
    ) -> dict[str, Any]:
        body = review_body(verdict, corrected_label, comment)
        return self._json("POST", f"/api/v1/predictions/{prediction_id}/review", json=body)

    def reviews(self, prediction_id: str) -> list[dict[str, Any]]:
        return self._json("GET", f"/api/v1/predictions/{prediction_id}/reviews")

    def explain(
        self,
        prediction_id: str,
        question: str | None = None,
        history: list[dict[str, str]] | None = None,
    ) -> dict[str, Any]:
        """The assistant's explanation of a prediction or, with `question`, its answer to a
        follow-up; `history` is the conversation so far, oldest first."""
        body: dict[str, Any] = {}
        if question:
            body["question"] = question
        if history:
            body["history"] = history
        return self._json("POST", f"/api/v1/predictions/{prediction_id}/explain", json=body)

    def patients(
        self, search: str | None = None, limit: int = 50, offset: int = 0
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit}
        if offset:
            params["offset"] = offset
        if search:
            params["search"] = search
        return self._json("GET", "/api/v1/patients", params=params)

    def patient(self, patient_id: str) -> dict[str, Any]:
        return self._json("GET", f"/api/v1/patients/{patient_id}")

    def create_patient(self, external_ref: str) -> dict[str, Any]:
        return self._json("POST", "/api/v1/patients", json={"external_ref": external_ref})

    def stats(self, created_from: str | None = None, created_to: str | None = None) -> dict:
        params = {"created_from": created_from, "created_to": created_to}
        return self._json("GET", "/api/v1/stats", params={k: v for k, v in params.items() if v})

    def label_export(self) -> bytes:
        return self._bytes("/api/v1/exports/labels")

    def models(self) -> list[dict[str, Any]]:
        return self._json("GET", "/api/v1/models")

    def model(self, version: str) -> dict[str, Any]:
        return self._json("GET", f"/api/v1/models/{version}")

    def model_figure(self, version: str, figure: str) -> bytes:
        return self._bytes(f"/api/v1/models/{version}/figures/{figure}")

    def activate_model(self, version: str) -> dict[str, Any]:
        return self._json("POST", f"/api/v1/models/{version}/activate")

    def users(self, limit: int = 200) -> dict[str, Any]:
        return self._json("GET", "/api/v1/admin/users", params={"limit": limit})

    def create_user(self, email: str, full_name: str, role: str, password: str) -> dict:
        body = {"email": email, "full_name": full_name, "role": role, "password": password}
        return self._json("POST", "/api/v1/admin/users", json=body)

    def update_user(self, user_id: str, **changes: Any) -> dict[str, Any]:
        return self._json("PATCH", f"/api/v1/admin/users/{user_id}", json=changes)

    def slides(
        self, patient_id: str | None = None, limit: int = 20, offset: int = 0
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if patient_id:
            params["patient_id"] = patient_id
        return self._json("GET", "/api/v1/slides", params=params)

    def slide(self, slide_id: str) -> dict[str, Any]:
        return self._json("GET", f"/api/v1/slides/{slide_id}")

    def slide_thumbnail(self, slide_id: str) -> bytes:
        return self._bytes(f"/api/v1/slides/{slide_id}/thumbnail")

    def slide_view_link(self, slide_id: str) -> dict[str, Any]:
        """A grant to read this one slide's deep-zoom tiles for a few minutes, for the
        viewer in the browser: it opens that slide and nothing else, and expires."""
        return self._json("POST", f"/api/v1/slides/{slide_id}/view-links")

    def start_slide_analysis(self, slide_id: str) -> dict[str, Any]:
        """Queue an analysis of the whole slide (clinician or admin); answers it queued."""
        return self._json("POST", f"/api/v1/slides/{slide_id}/analyses")

    def slide_analyses(self, slide_id: str) -> list[dict[str, Any]]:
        """The slide's analyses, newest first."""
        return self._json("GET", f"/api/v1/slides/{slide_id}/analyses")

    def analysis(self, analysis_id: str) -> dict[str, Any]:
        return self._json("GET", f"/api/v1/analyses/{analysis_id}")

    def cancel_analysis(self, analysis_id: str) -> dict[str, Any]:
        return self._json("POST", f"/api/v1/analyses/{analysis_id}/cancel")

    def analysis_regions(self, analysis_id: str) -> list[dict[str, Any]]:
        return self._json("GET", f"/api/v1/analyses/{analysis_id}/regions")

    def analysis_regions_geojson(self, analysis_id: str) -> bytes:
        """The regions as a GeoJSON FeatureCollection (level-0 pixels) that QuPath imports."""
        return self._bytes(f"/api/v1/analyses/{analysis_id}/regions.geojson")

    def region_tile(
        self, analysis_id: str, region_id: str, rank: int, overlay: str = "gradcam"
    ) -> bytes:
        """One of a region's top tiles as PNG, with its Grad-CAM overlay or (`none`) alone."""
        return self._bytes(
            f"/api/v1/analyses/{analysis_id}/regions/{region_id}/tiles/{rank}.png",
            params={"overlay": overlay},
        )

    def review_region(
        self,
        analysis_id: str,
        region_id: str,
        verdict: str,
        corrected_label: str | None = None,
        comment: str | None = None,
    ) -> dict[str, Any]:
        """A clinician's reading of one region: agree, correct (with the label), or dismiss."""
        return self._json(
            "POST",
            f"/api/v1/analyses/{analysis_id}/regions/{region_id}/review",
            json=review_body(verdict, corrected_label, comment),
        )

    def review_analysis(
        self, analysis_id: str, verdict: str, comment: str | None = None
    ) -> dict[str, Any]:
        """The clinician's verdict on the whole slide: benign, malignant or indeterminate."""
        body = review_body(verdict, comment=comment)
        return self._json("POST", f"/api/v1/analyses/{analysis_id}/review", json=body)

    def analysis_stats(self) -> dict[str, Any]:
        return self._json("GET", "/api/v1/analyses/stats")

    def close(self) -> None:
        self._client.close()

    def reopened(self) -> "GatewayClient":
        """The same user's client on a connection of its own, for code that runs after the
        page's run has closed this one: a fragment's timed reruns run only the fragment."""
        return GatewayClient(
            self.base_url,
            self._timeout_s,
            transport=self._transport,
            store=self._store,
            client_address=self._forwarded_for,
        )


def browser_address(
    peer: str | None, headers: Mapping[str, str], trusted: str = "127.0.0.1"
) -> str | None:
    """The address of the person using the app. Behind a tunnel or proxy (ngrok, an ingress)
    Streamlit's peer is that proxy, so its X-Forwarded-For is believed, but only when the
    peer is one of `trusted` (comma-separated addresses or networks, "*" for any) — the same
    rule as uvicorn's. Streamlit reports no peer for a connection from this machine."""
    peer = peer if isinstance(peer, str) and peer else "127.0.0.1"
    if not _is_trusted(peer, trusted):
        return peer
    forwarded = next((v for k, v in headers.items() if k.lower() == "x-forwarded-for"), "")
    # The nearest hop that is not one of our proxies is the client.
    hops = [h.strip() for h in forwarded.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, trusted):
            return hop
    if hops:  # every hop trusted ("*"): the first one is the client
        return hops[0]
    return None if peer == "127.0.0.1" else peer


def _is_trusted(address: str, trusted: str) -> bool:
    entries = [t.strip() for t in trusted.split(",") if t.strip()]
    if "*" in entries:
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    for entry in entries:
        try:
            if ip in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


def client_for_session(
    base_url: str,
    timeout_s: float,
    store: MutableMapping[str, Any],
    client_address: str | None = None,
    transport: httpx.BaseTransport | None = None,
) -> GatewayClient:
    """The client of one browser session: its tokens live in `store` (the session state)."""
    return GatewayClient(
        base_url, timeout_s, transport=transport, store=store, client_address=client_address
    )
