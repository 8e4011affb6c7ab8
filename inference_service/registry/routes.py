from fastapi import APIRouter, status
from fastapi.responses import FileResponse

from common.db import SessionDep
from inference_service.deps import Admin, Reader, SettingsDep
from inference_service.registry import service
from inference_service.registry.schemas import (
    ModelVersionDetail,
    ModelVersionOut,
    RegisterRequest,
)

router = APIRouter(prefix="/models", tags=["models"])


@router.get("", response_model=list[ModelVersionOut], summary="Registered model versions")
async def list_versions(_: Reader, session: SessionDep) -> list[ModelVersionOut]:
    return [ModelVersionOut.model_validate(v) for v in await service.list_all(session)]


@router.get(
    "/{version}",
    response_model=ModelVersionDetail,
    summary="One version with its card and training reports",
)
async def get_version(
    version: str, _: Reader, session: SessionDep, settings: SettingsDep
) -> ModelVersionDetail:
    found = await service.get(session, version)
    detail = ModelVersionDetail.model_validate(found)
    models_dir = settings.models_dir
    detail.reports = service.reports_of(models_dir, found)
    detail.figures = service.report_figures(models_dir, found)
    return detail


@router.get(
    "/{version}/figures/{figure:path}",
    response_class=FileResponse,
    responses={200: {"content": {"image/png": {}}}},
    summary="One PNG figure of the version's training reports",
)
async def get_figure(
    version: str, figure: str, _: Reader, session: SessionDep, settings: SettingsDep
) -> FileResponse:
    found = await service.get(session, version)
    path = service.report_figure(settings.models_dir, found, figure)
    return FileResponse(path, media_type="image/png")


@router.post(
    "",
    response_model=ModelVersionOut,
    status_code=status.HTTP_201_CREATED,
    summary="Register a version folder (admin)",
)
async def register(
    body: RegisterRequest, admin: Admin, session: SessionDep, settings: SettingsDep
) -> ModelVersionOut:
    models_dir = settings.models_dir
    registered = await service.register(session, models_dir, body.path, admin.subject)
    if body.activate:
        registered = await service.activate(session, registered.version, admin.subject, models_dir)
    await session.commit()
    return ModelVersionOut.model_validate(registered)


@router.post(
    "/{version}/activate",
    response_model=ModelVersionOut,
    summary="Serve this version from now on (admin)",
)
async def activate(
    version: str, admin: Admin, session: SessionDep, settings: SettingsDep
) -> ModelVersionOut:
    models_dir = settings.models_dir
    chosen = await service.activate(session, version, admin.subject, models_dir)
    await session.commit()
    return ModelVersionOut.model_validate(chosen)
