"""`/api/v1/patients`: pseudonymised patients (a hospital reference, never a name)."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response

from gateway.deps import ProxyDep, Reader, Writer
from gateway.patients.schemas import Patient, PatientCreate, PatientPage, PatientUpdate
from gateway.plumbing.errors import error_responses

router = APIRouter(prefix="/api/v1/patients", tags=["patients"])
READ_ERRORS = error_responses(401, 422, 429, 503, 504)
WRITE_ERRORS = error_responses(401, 403, 422, 429, 503, 504)


@router.post(
    "",
    response_model=Patient,
    status_code=201,
    summary="Register a patient",
    responses={**WRITE_ERRORS, **error_responses(409, s409="The reference is taken")},
)
async def create_patient(proxy: ProxyDep, _: PatientCreate, __: Writer) -> Response:
    return await proxy.forward("data", "/patients", idempotent=False)


@router.get(
    "", response_model=PatientPage, summary="Patients, by reference prefix", responses=READ_ERRORS
)
async def list_patients(
    proxy: ProxyDep,
    _: Reader,
    search: Annotated[str | None, Query(max_length=64, description="reference prefix")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> Response:
    return await proxy.forward("data", "/patients", idempotent=True)


@router.get(
    "/{patient_id}",
    response_model=Patient,
    summary="One patient",
    responses={**READ_ERRORS, **error_responses(404)},
)
async def get_patient(proxy: ProxyDep, patient_id: uuid.UUID, _: Reader) -> Response:
    return await proxy.forward("data", f"/patients/{patient_id}", idempotent=True)


@router.patch(
    "/{patient_id}",
    response_model=Patient,
    summary="Change a patient's details",
    responses={**WRITE_ERRORS, **error_responses(404, 409, s409="The reference is taken")},
)
async def update_patient(
    proxy: ProxyDep, patient_id: uuid.UUID, _: PatientUpdate, __: Writer
) -> Response:
    return await proxy.forward("data", f"/patients/{patient_id}", idempotent=True)
