"""Typed dependencies, so routes read like their contract."""

from typing import Annotated

from fastapi import Depends, Request

from auth_service.login.service import LoginContext

# Who may call: the same rules in every service.
from common.auth import Admin as Admin
from common.auth import Reader as Reader
from common.deps import app_state


def client_address(request: Request) -> str:
    # The real client's address: X-Forwarded-For is honoured from trusted proxies only.
    return request.client.host if request.client else "unknown"


LoginContextDep = Annotated[LoginContext, Depends(app_state("login"))]
ClientAddress = Annotated[str, Depends(client_address)]
