"""`/api/v1/auth/...` and `/api/v1/admin/users...`: the auth service's public routes."""

import uuid
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Body, Depends, Query, Request, Response
from fastapi.security import OAuth2PasswordRequestForm

from common.auth import CurrentPrincipal, Principal, require_roles
from gateway.proxy import forward

router = APIRouter(prefix="/api/v1")
AdminPrincipal = Annotated[Principal, Depends(require_roles("admin"))]
Role = Literal["admin", "clinician", "viewer"]

ERRORS = {
    401: {"description": "Missing, invalid or expired token"},
    503: {"description": "The auth service is unavailable"},
    504: {"description": "The auth service did not answer in time"},
}
ADMIN_ERRORS = {**ERRORS, 403: {"description": "The caller is not an admin"}}


def _auth(request: Request):
    return request.app.state.downstreams.clients["auth"]


@router.post(
    "/auth/token",
    tags=["auth"],
    summary="Log in: email as `username`, password -> access and refresh tokens",
    responses={**ERRORS, 429: {"description": "Too many failed attempts; see Retry-After"}},
)
async def token(request: Request, form: Annotated[OAuth2PasswordRequestForm, Depends()]):
    # The form was parsed here (for the docs' "Authorize" button); pass the same fields on.
    fields = {
        "grant_type": form.grant_type or "password",
        "username": form.username,
        "password": form.password,
        "scope": " ".join(form.scopes),
    }
    return await forward(
        request,
        _auth(request),
        "auth",
        "/token",
        content=urlencode(fields).encode(),
        content_type="application/x-www-form-urlencoded",
    )


RefreshBody = Annotated[dict[str, Any], Body(examples=[{"refresh_token": "eyJ..."}])]


@router.post("/auth/refresh", tags=["auth"], summary="Rotate a refresh token", responses=ERRORS)
async def refresh(request: Request, _: RefreshBody) -> Response:
    return await forward(request, _auth(request), "auth", "/refresh")


@router.post(
    "/auth/logout", tags=["auth"], status_code=204, summary="End this session", responses=ERRORS
)
async def logout(request: Request, _: RefreshBody) -> Response:
    return await forward(request, _auth(request), "auth", "/logout")


@router.get("/auth/me", tags=["auth"], summary="The logged-in user", responses=ERRORS)
async def me(request: Request, _: CurrentPrincipal) -> Response:
    return await forward(request, _auth(request), "auth", "/me")


@router.get("/admin/users", tags=["admin"], summary="List users", responses=ADMIN_ERRORS)
async def list_users(
    request: Request,
    _: AdminPrincipal,
    role: Role | None = None,
    is_active: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    return await forward(request, _auth(request), "auth", "/users")


UserBody = Annotated[
    dict[str, Any],
    Body(
        examples=[
            {
                "email": "dr.lee@hospital.example",
                "full_name": "Dr Lee",
                "role": "clinician",
                "password": "a long unusual passphrase",
            }
        ]
    ),
]


@router.post(
    "/admin/users",
    tags=["admin"],
    status_code=201,
    summary="Create a user",
    responses={
        **ADMIN_ERRORS,
        409: {"description": "Email taken"},
        422: {"description": "Invalid field or weak password"},
    },
)
async def create_user(request: Request, _: AdminPrincipal, __: UserBody) -> Response:
    return await forward(request, _auth(request), "auth", "/users")


@router.get("/admin/users/{user_id}", tags=["admin"], summary="One user", responses=ADMIN_ERRORS)
async def get_user(request: Request, user_id: uuid.UUID, _: AdminPrincipal) -> Response:
    return await forward(request, _auth(request), "auth", f"/users/{user_id}")


@router.patch(
    "/admin/users/{user_id}",
    tags=["admin"],
    summary="Change role or name, deactivate or reactivate, reset the password",
    responses={**ADMIN_ERRORS, 409: {"description": "Would leave no active admin"}},
)
async def update_user(
    request: Request,
    user_id: uuid.UUID,
    _: AdminPrincipal,
    __: Annotated[dict[str, Any], Body(examples=[{"role": "viewer"}, {"is_active": False}])],
) -> Response:
    return await forward(request, _auth(request), "auth", f"/users/{user_id}")
