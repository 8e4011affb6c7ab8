"""The frontend's only way out: a small synchronous client for the gateway's API."""

import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx


class GatewayError(Exception):
    """The gateway could not be reached or answered with an error; `message` is for people."""

    def __init__(self, message: str, status_code: int | None = None, request_id: str | None = None):
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.request_id = request_id


@dataclass
class SystemStatus:
    ready: bool
    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    message: str | None = None


class GatewayClient:
    def __init__(self, base_url: str, timeout_s: float = 30.0, transport=None) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(base_url=self.base_url, timeout=timeout_s, transport=transport)

    def _get(self, path: str) -> httpx.Response:
        request_id = uuid.uuid4().hex
        try:
            return self._client.get(path, headers={"X-Request-ID": request_id})
        except httpx.TimeoutException as exc:
            raise GatewayError(
                f"The gateway at {self.base_url} did not answer in time.", request_id=request_id
            ) from exc
        except httpx.TransportError as exc:
            raise GatewayError(
                f"The gateway at {self.base_url} cannot be reached ({type(exc).__name__}).",
                request_id=request_id,
            ) from exc

    def system_status(self) -> SystemStatus:
        """The gateway's `/ready`: whether every service behind it is up, and why not."""
        response = self._get("/ready")
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

    def close(self) -> None:
        self._client.close()
