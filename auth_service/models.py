"""Every table of the auth service, imported in one place for Alembic and the tests."""

from auth_service.throttling.models import KnownLoginAddress, LoginThrottle
from auth_service.tokens.models import RefreshToken
from auth_service.users.models import User

__all__ = ["KnownLoginAddress", "LoginThrottle", "RefreshToken", "User"]
