import uuid
from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel

from common.db import SessionDep
from slide_service.deps import Reader, ViewGrantsDep
from slide_service.slides import service as slides

router = APIRouter(prefix="/slides", tags=["view links"])


class ViewLink(BaseModel):
    grant: str
    expires_at: datetime


@router.post(
    "/{slide_id}/view-links",
    response_model=ViewLink,
    summary="A short-lived grant to read this slide's dzi and tiles without a bearer token",
)
async def create_view_link(
    slide_id: uuid.UUID, who: Reader, session: SessionDep, grants: ViewGrantsDep
) -> ViewLink:
    await slides.get(session, slide_id)  # no grant for a slide that does not exist
    grant, expires_at = grants.issue(who.subject, slide_id)
    return ViewLink(grant=grant, expires_at=expires_at)
