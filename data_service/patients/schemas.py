import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Sex = Literal["female", "male", "other", "unknown"]
# A hospital's pseudonymous code: letters, digits and - _ . / only, so a name cannot be
# typed in by mistake with spaces.
REFERENCE = r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$"


class PatientCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    external_ref: str = Field(pattern=REFERENCE, examples=["H-2026-00042"])
    birth_year: int | None = Field(default=None, ge=1900, le=2100)
    sex: Sex = "unknown"
    notes: str | None = Field(default=None, max_length=2000)


class PatientUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    external_ref: str | None = Field(default=None, pattern=REFERENCE)
    birth_year: int | None = Field(default=None, ge=1900, le=2100)
    sex: Sex | None = None
    notes: str | None = Field(default=None, max_length=2000)


class PatientOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    external_ref: str
    birth_year: int | None
    sex: str
    notes: str | None
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


class PatientPage(BaseModel):
    items: list[PatientOut]
    total: int
    limit: int
    offset: int
