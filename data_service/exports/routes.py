from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from common.db import SessionDep
from data_service.deps import Admin
from data_service.exports.service import reviewed_labels_csv

router = APIRouter(prefix="/exports", tags=["exports"])


@router.get(
    "/labels",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/csv": {}}}},
    summary="Reviewed labels as CSV (admin)",
)
async def export_labels(admin: Admin, session: SessionDep) -> PlainTextResponse:
    text = await reviewed_labels_csv(session, admin.subject)
    await session.commit()
    return PlainTextResponse(
        text,
        media_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="reviewed-labels.csv"'},
    )
