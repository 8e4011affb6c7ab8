"""Typed dependencies, so routes read like their contract."""

from typing import Annotated

from fastapi import Depends, Request

from auth_service.login.service import LoginContext
from common.auth import Principal, require_roles


def login_context(request: Request) -> LoginContext:
    return request.app.state.login


def client_address(request: Request) -> str:
    # The real client's address: X-Forwarded-For is honoured from trusted proxies only.
    return request.client.host if request.client else "unknown"


LoginContextDep = Annotated[LoginContext, Depends(login_context)]
ClientAddress = Annotated[str, Depends(client_address)]
Admin = Annotated[Principal, Depends(require_roles("admin"))]
