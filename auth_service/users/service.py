"""Users: creation under the password rules, listing, changes guarded so that an active
admin always remains, and the first admin at start."""

import logging
import uuid
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.passwords.hashing import PasswordHashing
from auth_service.passwords.policy import WeakPassword, check_password
from auth_service.tokens import service as tokens
from auth_service.users.models import User
from auth_service.users.schemas import UserCreate, UserUpdate
from common.auth import Principal
from common.db import page_with_total
from common.errors import ServiceError

audit = logging.getLogger("auth.audit")


class EmailTaken(ServiceError):
    def __init__(self) -> None:
        super().__init__(409, "A user with this email already exists.", code="email_taken")


class UserNotFound(ServiceError):
    def __init__(self) -> None:
        super().__init__(404, "No such user.", code="user_not_found")


class LastAdmin(ServiceError):
    def __init__(self) -> None:
        super().__init__(
            409,
            "This is the last active admin: make another user admin first.",
            code="last_admin",
        )


def weak_password_error(exc: WeakPassword) -> ServiceError:
    return ServiceError(422, str(exc), code="weak_password")


async def get_by_email(session: AsyncSession, email: str) -> User | None:
    return await session.scalar(select(User).where(func.lower(User.email) == email.strip().lower()))


async def get(session: AsyncSession, user_id: uuid.UUID) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise UserNotFound()
    return user


async def create(session: AsyncSession, hashing: PasswordHashing, data: UserCreate) -> User:
    try:
        check_password(data.password, data.email)
    except WeakPassword as exc:
        raise weak_password_error(exc) from exc
    user = User(
        email=data.email.strip(),
        full_name=data.full_name.strip(),
        role=data.role,
        password_hash=await hashing.hash(data.password),
    )
    session.add(user)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise EmailTaken() from exc
    await session.refresh(user)
    return user


@dataclass(frozen=True)
class UserFilter:
    role: str | None = None
    is_active: bool | None = None


async def list_page(
    session: AsyncSession, filters: UserFilter, limit: int, offset: int
) -> tuple[list[User], int]:
    conditions = []
    if filters.role is not None:
        conditions.append(User.role == filters.role)
    if filters.is_active is not None:
        conditions.append(User.is_active == filters.is_active)
    query = select(User).where(*conditions).order_by(User.created_at, User.id)
    return await page_with_total(session, query, limit, offset)


async def _other_active_admins(session: AsyncSession, user_id: uuid.UUID) -> int:
    # Locking every active admin row serialises concurrent demotions: two admins demoting
    # each other at once cannot both see "one other admin left".
    rows = await session.scalars(
        select(User.id).where(User.role == "admin", User.is_active).with_for_update()
    )
    return sum(1 for other in rows if other != user_id)


async def end_sessions(session: AsyncSession, user: User, reason: str) -> None:
    """Every session of `user` ends: refresh tokens now, access tokens as soon as the
    gateway sees the new token generation (a SQL increment, so concurrent changes add up)."""
    await tokens.revoke_all_for_user(session, user.id, reason=reason)
    user.token_generation = User.token_generation + 1  # type: ignore[assignment]


def token_is_current(user: User | None, principal: Principal) -> bool:
    """Whether `principal`'s token may still act for its user: the account exists, is
    active, and the token was issued in the user's current token generation."""
    return (
        user is not None and user.is_active and principal.token_generation >= user.token_generation
    )


async def update(
    session: AsyncSession,
    hashing: PasswordHashing,
    user_id: uuid.UUID,
    changes: UserUpdate,
    actor: str,
) -> User:
    user = await get(session, user_id)
    # An explicit null changes nothing, like a missing field.
    fields = changes.model_dump(exclude_unset=True, exclude_none=True)
    loses_admin = (
        user.role == "admin"
        and user.is_active
        and (fields.get("role", "admin") != "admin" or fields.get("is_active", True) is False)
    )
    if loses_admin and await _other_active_admins(session, user.id) == 0:
        raise LastAdmin()
    if "password" in fields:
        try:
            check_password(fields["password"], user.email)
        except WeakPassword as exc:
            raise weak_password_error(exc) from exc
        user.password_hash = await hashing.hash(fields["password"])
        await end_sessions(session, user, reason="password_reset")
    if fields.get("is_active") is False:
        await end_sessions(session, user, reason="deactivated")
    if fields.get("is_active") is True and not user.is_active:
        # No token of the deactivated user works, so this ends nothing; but the tokens issued
        # from now on carry a generation the gateway has not seen with "inactive", and make
        # it ask again instead of using the answer it keeps from the deactivation.
        user.token_generation = User.token_generation + 1  # type: ignore[assignment]
    for name in ("full_name", "role", "is_active"):
        if name in fields:
            setattr(user, name, fields[name].strip() if name == "full_name" else fields[name])
    await session.flush()
    await session.refresh(user)
    audit.info(  # which fields changed, never their values
        "user changed",
        extra={
            "event": "user_changed",
            "user_id": str(user.id),
            "actor": actor,
            "fields": sorted(fields),
        },
    )
    return user


async def ensure_first_admin(
    session: AsyncSession, hashing: PasswordHashing, email: str, password: str, full_name: str
) -> User | None:
    """Create the admin from the configuration when no active admin exists. Returns it, or
    None when an active admin exists already."""
    existing = await session.scalar(
        select(User.id).where(User.role == "admin", User.is_active).limit(1)
    )
    if existing is not None:
        return None
    user = await create(
        session,
        hashing,
        UserCreate(email=email, full_name=full_name, role="admin", password=password),
    )
    audit.info(
        "first admin created", extra={"event": "admin_bootstrapped", "user_id": str(user.id)}
    )
    return user
