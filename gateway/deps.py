"""Who may call a route: typed dependencies, so a route's signature states its rule."""

from typing import Annotated

from fastapi import Depends

from common.auth import CurrentPrincipal, Principal, require_roles

Reader = CurrentPrincipal  # any role, viewers included
Clinical = Annotated[Principal, Depends(require_roles("admin", "clinician"))]
Admin = Annotated[Principal, Depends(require_roles("admin"))]
