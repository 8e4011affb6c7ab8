"""Pseudonymised patients as API consumers see them in `/openapi.json`. Requests are checked
against these before the data service is called; its answers are documented with them."""

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Sex = Literal["female", "male", "other", "unknown"]
PATIENT_REFERENCE = r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$"


class PatientCreate(BaseModel):
    """A pseudonymised patient: the hospital's reference, never a name."""

    model_config = ConfigDict(extra="forbid")

    external_ref: str = Field(pattern=PATIENT_REFERENCE, examples=["H-2026-00042"])
    birth_year: int | None = Field(default=None, ge=1900, le=2100, examples=[1961])
    sex: Sex = "unknown"
    notes: str | None = Field(default=None, max_length=2000)


class PatientUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"sex": "female"}]})

    external_ref: str | None = Field(default=None, pattern=PATIENT_REFERENCE)
    birth_year: int | None = Field(default=None, ge=1900, le=2100)
    sex: Sex | None = None
    notes: str | None = Field(default=None, max_length=2000)


class Patient(BaseModel):
    id: uuid.UUID
    external_ref: str
    birth_year: int | None
    sex: Sex
    notes: str | None
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


class PatientPage(BaseModel):
    items: list[Patient]
    total: int
    limit: int
    offset: int
