import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field

Role = Literal["admin", "clinician", "viewer"]


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    full_name: str
    role: Role
    is_active: bool
    created_at: datetime
    updated_at: datetime
    last_login_at: datetime | None


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: EmailStr
    full_name: str = Field(min_length=1, max_length=200)
    role: Role
    # Checked against the password rules by the service, which names the broken rule.
    password: str = Field(repr=False)


class UserUpdate(BaseModel):
    """Only the fields present change. `password` sets a new one (an admin's reset)."""

    model_config = ConfigDict(extra="forbid")

    full_name: str | None = Field(default=None, min_length=1, max_length=200)
    role: Role | None = None
    is_active: bool | None = None
    password: str | None = Field(default=None, repr=False)


class UserPage(BaseModel):
    items: list[UserOut]
    total: int
    limit: int
    offset: int


class AccountStatus(BaseModel):
    """What decides whether a user's access tokens still work: the account is active, and
    a token's `gen` claim is not below `token_generation`."""

    active: bool
    token_generation: int
