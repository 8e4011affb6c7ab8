import uuid

from fastapi import APIRouter

from common.db import SessionDep
from data_service.deps import Writer
from data_service.explanations import service
from data_service.explanations.schemas import ExplanationRecord, ExplanationRecorded

router = APIRouter(prefix="/predictions", tags=["explanations"])


@router.post(
    "/{prediction_id}/explanations",
    response_model=ExplanationRecorded,
    status_code=201,
    summary="Record one assistant exchange about the prediction (an audit event)",
)
async def record_explanation(
    prediction_id: uuid.UUID, body: ExplanationRecord, who: Writer, session: SessionDep
) -> ExplanationRecorded:
    event = await service.record_exchange(session, prediction_id, body, who.subject)
    await session.commit()
    return ExplanationRecorded(audit_event_id=event.id, prediction_id=prediction_id, at=event.at)
