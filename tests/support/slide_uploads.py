"""Slides through a launched stack's gateway: uploads, what the slide service keeps on disk,
and view grants made with the stack's own key (for grants that are wrong in one way)."""

import time
import uuid
from pathlib import Path

import httpx
import jwt

from devstack.launcher import LaunchedStack


def upload(
    api: httpx.Client,
    headers,
    patient_id: str,
    data: bytes,
    filename: str,
    *,
    raw: bool = False,
    content_type: str = "application/octet-stream",
    microns_per_pixel: float | None = None,
) -> httpx.Response:
    """POST /api/v1/slides: multipart (the fields before the file, as httpx sends them), or
    the raw body with the fields in the query."""
    fields = {"patient_id": patient_id}
    if microns_per_pixel is not None:
        fields["microns_per_pixel"] = str(microns_per_pixel)
    if raw:
        return api.post(
            "/api/v1/slides",
            params={**fields, "filename": filename},
            content=data,
            headers={**headers, "Content-Type": content_type},
        )
    return api.post(
        "/api/v1/slides",
        data=fields,
        files={"file": (filename, data, content_type)},
        headers=dict(headers),
    )


def storage_dir(stack: LaunchedStack) -> Path:
    return stack.var_dir / "slides"


def stored_files(stack: LaunchedStack) -> set[str]:
    """The slide files the slide service keeps (its temporary folder aside)."""
    root = storage_dir(stack)
    return {
        str(path.relative_to(root))
        for path in root.rglob("*")
        if path.is_file() and path.relative_to(root).parts[0] != "tmp"
    }


def uploads_under_way(stack: LaunchedStack) -> list[Path]:
    """What is in the slide service's temporary folder: an upload makes its own folder there
    when its first byte arrives, and it goes when the upload is stored or refused."""
    folder = storage_dir(stack) / "tmp"
    return list(folder.iterdir()) if folder.exists() else []


def files_with(stack: LaunchedStack, sha256: str) -> list[Path]:
    """The stored files of this content: content-addressed, under <sha[:2]>/<sha>/."""
    folder = storage_dir(stack) / sha256[:2] / sha256
    return [path for path in folder.rglob("*") if path.is_file()] if folder.exists() else []


def view_link_key(stack: LaunchedStack) -> bytes:
    return (stack.var_dir / "slide-keys" / "view-link.secret").read_text().strip().encode()


def grant_claims(slide_id: str, **changes: object) -> dict:
    """A view grant's claims as the slide service writes them, with `changes`."""
    now = int(time.time())
    return {
        "typ": "slide_view",
        "sub": str(uuid.uuid4()),
        "sid": slide_id,
        "scope": "read",
        "iat": now,
        "exp": now + 600,
        **changes,
    }


def mint_grant(key: bytes, slide_id: str, **changes: object) -> str:
    """A view grant as the slide service signs it, with `changes` to its claims."""
    return jwt.encode(grant_claims(slide_id, **changes), key, algorithm="HS256")
