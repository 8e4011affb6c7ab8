"""Tokens and users as API consumers see them in `/openapi.json`. Requests are checked
against these before the auth service is called; its answers are documented with them."""

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["admin", "clinician", "viewer"]


class TokenPair(BaseModel):
    access_token: str = Field(description="Send as `Authorization: Bearer ...`")
    refresh_token: str = Field(description="For /auth/refresh; each is usable once")
    token_type: Literal["bearer"]
    expires_in: int = Field(description="Seconds until the access token expires")
    refresh_expires_in: int = Field(description="Seconds until the refresh token expires")


class RefreshRequest(BaseModel):
    refresh_token: str = Field(min_length=1, max_length=4096, examples=["eyJ..."])


class User(BaseModel):
    id: uuid.UUID
    email: str
    full_name: str
    role: Role
    is_active: bool
    created_at: datetime
    updated_at: datetime
    last_login_at: datetime | None


class UserPage(BaseModel):
    items: list[User]
    total: int
    limit: int
    offset: int


class UserCreate(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "email": "dr.lee@hospital.example",
                    "full_name": "Dr Lee",
                    "role": "clinician",
                    "password": "a long unusual passphrase",
                }
            ]
        }
    )

    email: str = Field(max_length=320)
    full_name: str = Field(min_length=1, max_length=200)
    role: Role
    password: str = Field(description="At least 12 characters, not a common password")


class UserUpdate(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"role": "viewer"}, {"is_active": False}]}
    )

    full_name: str | None = Field(default=None, min_length=1, max_length=200)
    role: Role | None = None
    is_active: bool | None = None
    password: str | None = Field(default=None, description="A new password")
