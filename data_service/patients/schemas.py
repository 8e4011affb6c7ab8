import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

Sex = Literal["female", "male", "other", "unknown"]
# A hospital's pseudonymous code: letters, digits and - _ . only, so a name cannot be
# typed in by mistake with spaces.
REFERENCE = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


def not_a_path(value: object) -> object:
    """Refuse, with a reason, a reference that could name another file: it becomes part of a
    file name in the label export (`exports/service.py`)."""
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


# The pattern first, so that it is in the JSON schema; the reasons are checked before it.
Reference = Annotated[
    str, Field(pattern=REFERENCE, examples=["H-2026-00042"]), BeforeValidator(not_a_path)
]


class PatientCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    external_ref: Reference
    birth_year: int | None = Field(default=None, ge=1900, le=2100)
    sex: Sex = "unknown"
    notes: str | None = Field(default=None, max_length=2000)


class PatientUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    external_ref: Reference | None = None
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
