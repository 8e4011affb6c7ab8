"""The error envelope as `/openapi.json` documents it. Every service answers errors in this
shape (`common.errors`); the gateway's routes name theirs with `error_responses`."""

from typing import Any

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    code: str = Field(examples=["rate_limited"], description="Stable, machine-readable")
    message: str = Field(examples=["Too many prediction requests; try again in 60 s."])
    request_id: str = Field(description="Quote it when reporting a problem")


class ErrorEnvelope(BaseModel):
    error: ErrorBody


def error_responses(*statuses: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses, each with the envelope's schema.
    `descriptions` override the default wording, keyed `s404="..."`."""
    return {
        status: {
            "model": ErrorEnvelope,
            "description": descriptions.get(f"s{status}", ERROR_DESCRIPTIONS[status]),
        }
        for status in statuses
    }


ERROR_DESCRIPTIONS = {
    400: "The request cannot be read",
    401: "Missing, invalid or expired token",
    403: "The caller's role may not do this",
    404: "No such resource",
    409: "Conflicts with what is stored",
    413: "The body is too large",
    415: "Not a supported media type",
    422: "A field is invalid (the message says which)",
    429: "Over a rate limit; see Retry-After and X-RateLimit-*",
    503: "A downstream service is unavailable (named in the message); see Retry-After",
    504: "A downstream service did not answer in time",
}
