"""`/api/v1/auth/...` and `/api/v1/admin/users...`: the auth service's public routes."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from fastapi.security import OAuth2PasswordRequestForm

from gateway.auth.schemas import (
    RefreshRequest,
    Role,
    TokenPair,
    User,
    UserCreate,
    UserPage,
    UserUpdate,
)
from gateway.deps import Admin, ProxyDep, Reader, limit_login
from gateway.plumbing.errors import error_responses

router = APIRouter(prefix="/api/v1")

ERRORS = error_responses(401, 422, 429, 503, 504)
ADMIN_ERRORS = {**ERRORS, **error_responses(403, s403="The caller is not an admin")}


@router.post(
    "/auth/token",
    tags=["auth"],
    response_model=TokenPair,
    summary="Log in: email as `username`, password -> access and refresh tokens",
    responses=error_responses(
        401, 422, 429, 503, 504, s429="Too many attempts from this address or on this account"
    ),
    dependencies=[Depends(limit_login)],
)
async def token(proxy: ProxyDep, form: Annotated[OAuth2PasswordRequestForm, Depends()]):
    # The form was parsed here (for the docs' "Authorize" button); pass the same fields on.
    fields = {
        "grant_type": form.grant_type or "password",
        "username": form.username,
        "password": form.password,
        "scope": " ".join(form.scopes),
    }
    return await proxy.forward("auth", "/token", idempotent=False, form=fields)


@router.post(
    "/auth/refresh",
    tags=["auth"],
    response_model=TokenPair,
    summary="Rotate a refresh token (reusing an old one ends the whole session)",
    responses=ERRORS,
)
async def refresh(proxy: ProxyDep, _: RefreshRequest) -> Response:
    return await proxy.forward("auth", "/refresh", idempotent=False)


@router.post(
    "/auth/logout", tags=["auth"], status_code=204, summary="End this session", responses=ERRORS
)
async def logout(proxy: ProxyDep, _: RefreshRequest) -> Response:
    return await proxy.forward("auth", "/logout", idempotent=True)


@router.get(
    "/auth/me", tags=["auth"], response_model=User, summary="The logged-in user", responses=ERRORS
)
async def me(proxy: ProxyDep, _: Reader) -> Response:
    return await proxy.forward("auth", "/me", idempotent=True)


@router.get(
    "/admin/users",
    tags=["admin"],
    response_model=UserPage,
    summary="List users",
    responses=ADMIN_ERRORS,
)
async def list_users(
    proxy: ProxyDep,
    _: Admin,
    role: Role | None = None,
    is_active: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> Response:
    return await proxy.forward("auth", "/users", idempotent=True)


@router.post(
    "/admin/users",
    tags=["admin"],
    response_model=User,
    status_code=201,
    summary="Create a user",
    responses={
        **ADMIN_ERRORS,
        **error_responses(409, 422, s409="Email taken", s422="Invalid field or weak password"),
    },
)
async def create_user(proxy: ProxyDep, _: Admin, __: UserCreate) -> Response:
    return await proxy.forward("auth", "/users", idempotent=False)


@router.get(
    "/admin/users/{user_id}",
    tags=["admin"],
    response_model=User,
    summary="One user",
    responses={**ADMIN_ERRORS, **error_responses(404)},
)
async def get_user(proxy: ProxyDep, user_id: uuid.UUID, _: Admin) -> Response:
    return await proxy.forward("auth", f"/users/{user_id}", idempotent=True)


@router.patch(
    "/admin/users/{user_id}",
    tags=["admin"],
    response_model=User,
    summary="Change role or name, deactivate or reactivate, reset the password",
    responses={**ADMIN_ERRORS, **error_responses(404, 409, s409="Would leave no active admin")},
)
async def update_user(proxy: ProxyDep, user_id: uuid.UUID, _: Admin, __: UserUpdate) -> Response:
    return await proxy.forward("auth", f"/users/{user_id}", idempotent=True)
