from fastapi import APIRouter, Response

from auth_service.deps import LoginContextDep
from auth_service.tokens.schemas import Jwks

router = APIRouter(tags=["keys"])


@router.get(
    "/.well-known/jwks.json",
    response_model=Jwks,
    summary="Public keys that verify the tokens (current and recently retired)",
)
async def jwks(context: LoginContextDep, response: Response) -> dict:
    # Verifiers cache it; a short lifetime lets a rotation reach them quickly.
    response.headers["Cache-Control"] = "public, max-age=300"
    return context.issuer.keyring.jwks()
