"""Pseudonymised patients as API consumers see them in `/openapi.json`. Requests are checked
against these before the data service is called; its answers are documented with them."""

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

Sex = Literal["female", "male", "other", "unknown"]
PATIENT_REFERENCE = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


def not_a_path(value: object) -> object:
    """The data service's reasons for refusing a reference that could name another file (it
    becomes part of a file name in the label export), given here before the call."""
    if not isinstance(value, str):
        return value
    if "/" in value or "\\" in value:
        reason = "must not contain '/' or '\\'"
    elif ".." in value:
        reason = "must not contain '..'"
    elif value.startswith("."):
        reason = "must not start with '.'"
    elif any(not character.isprintable() for character in value):
        reason = "must not contain control characters"
    else:
        return value
    raise PydanticCustomError(
        "patient_reference",
        "a patient reference {reason}: it names files in the label export",
        {"reason": reason},
    )


# The pattern first, so that it is in the OpenAPI schema; the reasons are checked before it.
PatientReference = Annotated[
    str, Field(pattern=PATIENT_REFERENCE, examples=["H-2026-00042"]), BeforeValidator(not_a_path)
]


class PatientCreate(BaseModel):
    """A pseudonymised patient: the hospital's reference, never a name."""

    model_config = ConfigDict(extra="forbid")

    external_ref: PatientReference
    birth_year: int | None = Field(default=None, ge=1900, le=2100, examples=[1961])
    sex: Sex = "unknown"
    notes: str | None = Field(default=None, max_length=2000)


class PatientUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"sex": "female"}]})

    external_ref: PatientReference | None = None
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
