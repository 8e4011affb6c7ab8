from typing import Annotated

from fastapi import APIRouter, Depends, Response, status
from fastapi.security import OAuth2PasswordRequestForm

from auth_service.deps import ClientAddress, LoginContextDep
from auth_service.login import service
from auth_service.tokens.schemas import RefreshRequest, TokenPair
from common.db import SessionDep

router = APIRouter(tags=["auth"])

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}  # RFC 6749 §5.1


@router.post(
    "/token",
    response_model=TokenPair,
    summary="Log in with email (as `username`) and password",
    responses={
        401: {"description": "Incorrect email or password"},
        429: {"description": "Too many failed attempts; see Retry-After"},
    },
)
async def token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    session: SessionDep,
    context: LoginContextDep,
    client: ClientAddress,
    response: Response,
) -> TokenPair:
    response.headers.update(NO_STORE)
    return await service.login(session, context, form.username, form.password, client)


@router.post(
    "/refresh", response_model=TokenPair, summary="Exchange a refresh token for a new pair"
)
async def refresh(
    body: RefreshRequest,
    session: SessionDep,
    context: LoginContextDep,
    client: ClientAddress,
    response: Response,
) -> TokenPair:
    response.headers.update(NO_STORE)
    return await service.refresh(session, context, body.refresh_token, client)


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="End the session the refresh token belongs to",
)
async def logout(body: RefreshRequest, session: SessionDep, context: LoginContextDep) -> None:
    await service.logout(session, context, body.refresh_token)
