from datetime import datetime

from sqlalchemy import DateTime, Integer, String, func
from sqlalchemy.orm import Mapped, mapped_column

from auth_service.database import Base


class LoginThrottle(Base):
    """Recent failed logins counted under one key: an account from one client address
    (`account-address:<account hash>:<client ip>`), an account from every address it has
    not signed in from (`account:<account hash>`), or one client address across accounts
    (`address:<client ip>`). The account hash is the SHA-256 of the email in lower case,
    whether or not the account exists, so an unknown email behaves like a real one.

    An attempt is counted before its password is checked, under a row lock, so concurrent
    attempts cannot all slip in before the first failure is written.
    """

    __tablename__ = "login_throttles"

    key: Mapped[str] = mapped_column(String(400), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failure_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class KnownLoginAddress(Base):
    """A client address an account signed in from successfully. Attempts from it are not
    slowed by the account-wide delay that failures from other addresses cause, so a guesser
    spread over many addresses cannot keep the user out from where they usually work."""

    __tablename__ = "known_login_addresses"

    account: Mapped[str] = mapped_column(String(100), primary_key=True)  # the account key
    address: Mapped[str] = mapped_column(String(300), primary_key=True)
    last_login_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
