import uuid
from typing import Annotated

from fastapi import APIRouter, Query, status

from common.db import SessionDep
from data_service.deps import Reader, SettingsDep, Writer, page_limit
from data_service.patients import service
from data_service.patients.schemas import PatientCreate, PatientOut, PatientPage, PatientUpdate

router = APIRouter(prefix="/patients", tags=["patients"])


@router.post("", response_model=PatientOut, status_code=status.HTTP_201_CREATED)
async def create_patient(body: PatientCreate, who: Writer, session: SessionDep) -> PatientOut:
    patient = await service.create(session, body, who.subject)
    await session.commit()
    return PatientOut.model_validate(patient)


@router.get("", response_model=PatientPage, summary="List patients, by reference prefix")
async def list_patients(
    _: Reader,
    session: SessionDep,
    settings: SettingsDep,
    search: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> PatientPage:
    limit = page_limit(limit, settings.max_page_size)
    items, total = await service.list_page(session, search, limit, offset)
    return PatientPage(
        items=[PatientOut.model_validate(p) for p in items], total=total, limit=limit, offset=offset
    )


@router.get("/{patient_id}", response_model=PatientOut)
async def get_patient(patient_id: uuid.UUID, _: Reader, session: SessionDep) -> PatientOut:
    return PatientOut.model_validate(await service.get(session, patient_id))


@router.patch("/{patient_id}", response_model=PatientOut)
async def update_patient(
    patient_id: uuid.UUID, body: PatientUpdate, who: Writer, session: SessionDep
) -> PatientOut:
    patient = await service.update(session, patient_id, body, who.subject)
    await session.commit()
    return PatientOut.model_validate(patient)
