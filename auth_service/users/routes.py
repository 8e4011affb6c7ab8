import uuid
from typing import Annotated

from fastapi import APIRouter, Query, status

from auth_service.deps import Admin, LoginContextDep, Reader
from auth_service.users import service
from auth_service.users.models import User
from auth_service.users.schemas import (
    AccountStatus,
    Role,
    UserCreate,
    UserOut,
    UserPage,
    UserUpdate,
)
from common.auth import InvalidToken, Principal
from common.db import SessionDep

router = APIRouter(tags=["users"])


async def _token_user(session: SessionDep, principal: Principal) -> User | None:
    try:
        return await service.get(session, uuid.UUID(principal.subject))
    except (ValueError, service.UserNotFound):
        return None


@router.get("/me", response_model=UserOut, summary="The user the access token belongs to")
async def me(principal: Reader, session: SessionDep) -> UserOut:
    user = await _token_user(session, principal)
    if user is None or not service.token_is_current(user, principal):
        raise InvalidToken("This account no longer exists or is deactivated.")
    return UserOut.model_validate(user)


@router.get(
    "/me/status",
    response_model=AccountStatus,
    summary="Whether the token's user is active, and their current token generation "
    "(the gateway asks, to refuse tokens of ended sessions)",
)
async def my_status(principal: Reader, session: SessionDep) -> AccountStatus:
    # Answered for any correctly signed token, even one of an ended session: the answer is
    # about the user, and the gateway keeps it for every token of theirs for a few seconds.
    user = await _token_user(session, principal)
    if user is None:
        return AccountStatus(active=False, token_generation=0)
    return AccountStatus(active=user.is_active, token_generation=user.token_generation)


@router.post(
    "/users",
    response_model=UserOut,
    status_code=status.HTTP_201_CREATED,
    summary="Create a user (admin)",
)
async def create_user(
    body: UserCreate, admin: Admin, session: SessionDep, context: LoginContextDep
) -> UserOut:
    user = await service.create(session, context.hashing, body)
    await session.commit()
    service.audit.info(
        "user created",
        extra={
            "event": "user_created",
            "user_id": str(user.id),
            "role": user.role,
            "actor": admin.subject,
        },
    )
    return UserOut.model_validate(user)


@router.get("/users", response_model=UserPage, summary="List users (admin)")
async def list_users(
    _: Admin,
    session: SessionDep,
    role: Role | None = None,
    is_active: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> UserPage:
    users, total = await service.list_page(
        session, service.UserFilter(role=role, is_active=is_active), limit, offset
    )
    return UserPage(
        items=[UserOut.model_validate(u) for u in users], total=total, limit=limit, offset=offset
    )


@router.get("/users/{user_id}", response_model=UserOut, summary="One user (admin)")
async def get_user(user_id: uuid.UUID, _: Admin, session: SessionDep) -> UserOut:
    return UserOut.model_validate(await service.get(session, user_id))


@router.patch(
    "/users/{user_id}",
    response_model=UserOut,
    summary="Change name or role, deactivate or reactivate, or reset the password (admin)",
)
async def update_user(
    user_id: uuid.UUID,
    body: UserUpdate,
    admin: Admin,
    session: SessionDep,
    context: LoginContextDep,
) -> UserOut:
    user = await service.update(session, context.hashing, user_id, body, actor=admin.subject)
    await session.commit()
    return UserOut.model_validate(user)
