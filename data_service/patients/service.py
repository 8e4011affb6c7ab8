import uuid

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from common.db import page_with_total
from common.errors import ServiceError
from data_service.audit.service import record
from data_service.patients.models import Patient
from data_service.patients.schemas import PatientCreate, PatientUpdate


class PatientNotFound(ServiceError):
    def __init__(self) -> None:
        super().__init__(404, "No such patient.", code="patient_not_found")


class ReferenceTaken(ServiceError):
    def __init__(self) -> None:
        super().__init__(
            409, "A patient with this external reference exists already.", code="reference_taken"
        )


async def get(session: AsyncSession, patient_id: uuid.UUID) -> Patient:
    patient = await session.get(Patient, patient_id)
    if patient is None:
        raise PatientNotFound()
    return patient


async def create(session: AsyncSession, data: PatientCreate, actor: str) -> Patient:
    patient = Patient(**data.model_dump(), created_by=uuid.UUID(actor))
    session.add(patient)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise ReferenceTaken() from exc
    await record(session, actor, "patient.created", "patient", patient.id)
    await session.refresh(patient)
    return patient


async def update(
    session: AsyncSession, patient_id: uuid.UUID, data: PatientUpdate, actor: str
) -> Patient:
    patient = await get(session, patient_id)
    changes = data.model_dump(exclude_unset=True, exclude_none=True)
    for field, value in changes.items():
        setattr(patient, field, value)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise ReferenceTaken() from exc
    await record(
        session, actor, "patient.updated", "patient", patient.id, {"fields": sorted(changes)}
    )
    await session.refresh(patient)
    return patient


async def list_page(
    session: AsyncSession, search: str | None, limit: int, offset: int
) -> tuple[list[Patient], int]:
    conditions = []
    if search:
        # A prefix of the reference, as people type it; escaped so % and _ match themselves.
        escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        conditions.append(Patient.external_ref.ilike(f"{escaped}%", escape="\\"))
    query = select(Patient).where(*conditions).order_by(Patient.external_ref, Patient.id)
    return await page_with_total(session, query, limit, offset)
