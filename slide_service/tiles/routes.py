import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response

from slide_service.deps import SlideRefsDep, SlideViewer, TileServerDep
from slide_service.tiles.deepzoom import TileServer, dzi_etag, not_modified, tile_etag

router = APIRouter(prefix="/slides", tags=["deep zoom"])

# Tiles of a content never change (the ETag names the content), so a browser keeps them.
CACHE_CONTROL = "private, max-age=86400, immutable"


@router.get(
    "/{slide_id}/dzi",
    response_class=Response,
    responses={200: {"content": {"application/xml": {}}}},
    summary="The Deep Zoom descriptor (bearer token or ?grant=)",
)
async def dzi(
    request: Request,
    slide_id: uuid.UUID,
    _: SlideViewer,
    refs: SlideRefsDep,
    tiles: TileServerDep,
) -> Response:
    ref = await refs.get(slide_id)
    etag = dzi_etag(ref)
    headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL}
    if not_modified(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    return Response(await tiles.dzi(ref), media_type="application/xml", headers=headers)


@router.get(
    "/{slide_id}/tiles/{level}/{col}_{row}.jpeg",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}},
    summary="One Deep Zoom tile (bearer token or ?grant=)",
)
async def tile(
    request: Request,
    slide_id: uuid.UUID,
    level: Annotated[int, Path(ge=0, le=64)],
    col: Annotated[int, Path(ge=0)],
    row: Annotated[int, Path(ge=0)],
    _: SlideViewer,
) -> Response:
    # The app's state read directly: the busiest route, where each dependency FastAPI
    # resolves costs every request.
    tiles: TileServer = request.app.state.tile_server
    ref = await request.app.state.slide_refs.get(slide_id)
    etag = tile_etag(ref, level, col, row)
    headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL}
    if not_modified(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    return Response(
        await tiles.tile(ref, level, col, row), media_type="image/jpeg", headers=headers
    )
