import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from data_service.audit.models import AuditEvent
from data_service.audit.service import record
from data_service.explanations.schemas import ExplanationRecord
from data_service.predictions import service as predictions


async def record_exchange(
    session: AsyncSession, prediction_id: uuid.UUID, exchange: ExplanationRecord, caller: str
) -> AuditEvent:
    """The audit event of one assistant exchange about an existing prediction."""
    await predictions.get(session, prediction_id)  # 404 for an unknown one
    event = await record(
        session,
        caller,
        "prediction.explained",
        "prediction",
        prediction_id,
        exchange.model_dump(exclude_none=True),
    )
    await session.flush()
    await session.refresh(event)
    return event
