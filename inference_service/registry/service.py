"""The model registry: version folders checked and recorded, one version active."""

import asyncio
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from common.errors import ServiceError
from inference_service.registry.models import ModelVersion
from ml.card import ModelCard
from ml.conversion import ConversionError, convert_version, needs_conversion
from ml.versions import CARD_FILE, artefact_problem, file_sha256, list_versions

logger = logging.getLogger("inference_service.registry")


class InvalidModelVersion(ServiceError):
    def __init__(self, message: str) -> None:
        super().__init__(422, message, code="invalid_model_version")


class VersionNotFound(ServiceError):
    def __init__(self, version: str) -> None:
        super().__init__(
            404, f"No model version {version!r} is registered.", code="model_version_not_found"
        )


class NoActiveVersion(ServiceError):
    def __init__(self) -> None:
        super().__init__(
            503, "No model version is active: an admin must activate one.", code="no_active_model"
        )


def resolve_folder(models_dir: Path, path: str) -> Path:
    """The version folder `path` names, which must lie inside `models_dir`."""
    root = models_dir.resolve()
    folder = (root / path).resolve()
    if not folder.is_relative_to(root) or folder == root:
        raise InvalidModelVersion("The folder must be a version folder inside the models folder.")
    if not folder.is_dir():
        raise InvalidModelVersion(f"No folder {path!r} in the models folder.")
    return folder


def read_verified_card(folder: Path) -> ModelCard:
    """The folder's card, validated, with the model file's checksum matching it, and the
    checksum of each file the card names beside it (the out-of-distribution statistics)."""
    card_path = folder / CARD_FILE
    try:
        raw = json.loads(card_path.read_text())
    except FileNotFoundError:
        raise InvalidModelVersion(f"{folder.name} has no {CARD_FILE}.") from None
    except (ValueError, OSError) as exc:
        raise InvalidModelVersion(f"{CARD_FILE} of {folder.name} is not valid JSON.") from exc
    try:
        card = ModelCard.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise InvalidModelVersion(
            f"The model card of {folder.name} is incomplete: {problems}"
        ) from exc
    model_file = folder / card.model_file
    if not model_file.is_file():
        raise InvalidModelVersion(f"{folder.name} has no model file {card.model_file}.")
    if file_sha256(model_file) != card.model_sha256:
        raise InvalidModelVersion(
            f"The checksum of {card.model_file} does not match its card: the file was changed "
            "or corrupted."
        )
    problem = artefact_problem(folder, card)
    if problem is not None:
        raise InvalidModelVersion(f"{folder.name}: {problem.removeprefix(str(folder) + '/')}.")
    return card


def locate_and_verify(models_dir: Path, path: str) -> tuple[str, ModelCard]:
    """The folder's path relative to `models_dir`, and its verified card (reads files)."""
    folder = resolve_folder(models_dir, path)
    return str(folder.relative_to(models_dir.resolve())), read_verified_card(folder)


def converted_card(models_dir: Path, relative: str, card: ModelCard) -> ModelCard:
    """The card with the faster runtimes recorded (`ml.conversion`): converted now, unless
    the card records them already. When conversion cannot write to the folder (a read-only
    volume), the version is registered as it is and serves on TensorFlow."""
    if not needs_conversion(card):
        return card
    logger.info("converting model version", extra={"version": card.version})
    try:
        return convert_version(models_dir.resolve() / relative)
    except (ConversionError, OSError) as exc:
        logger.warning("cannot convert %s (%s): it serves on tensorflow", card.version, exc)
        return card


async def register(session: AsyncSession, models_dir: Path, path: str, actor: str) -> ModelVersion:
    # Checksumming a model file takes a while, converting it seconds: off the event loop.
    relative, card = await asyncio.to_thread(locate_and_verify, models_dir, path)
    card = await asyncio.to_thread(converted_card, models_dir, relative, card)
    version = ModelVersion(
        version=card.version,
        path=relative,
        checksum_sha256=card.model_sha256,
        classes=card.classes,
        input_shape=card.input.size,
        metrics=card.metrics.model_dump(mode="json"),
        card=card.model_dump(mode="json"),
        status="registered",
        created_by=actor,
    )
    session.add(version)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise ServiceError(
            409, f"Version {card.version!r} is registered already.", code="version_exists"
        ) from exc
    await session.refresh(version)
    logger.info("registered model version", extra={"version": card.version, "actor": actor})
    return version


async def get(session: AsyncSession, version: str) -> ModelVersion:
    found = await session.get(ModelVersion, version)
    if found is None:
        raise VersionNotFound(version)
    return found


async def list_all(session: AsyncSession) -> list[ModelVersion]:
    return list(await session.scalars(select(ModelVersion).order_by(ModelVersion.created_at)))


async def active(session: AsyncSession) -> ModelVersion | None:
    return await session.scalar(select(ModelVersion).where(ModelVersion.status == "active"))


async def activate(session: AsyncSession, version: str, actor: str, models_dir: Path):
    """Make `version` the served one; the previous active version is archived."""
    chosen = await session.get(ModelVersion, version, with_for_update=True)
    if chosen is None:
        raise VersionNotFound(version)
    # The files may have changed since registration: check again before serving them.
    _, card = await asyncio.to_thread(locate_and_verify, models_dir, chosen.path)
    if card.model_sha256 != chosen.checksum_sha256:
        raise InvalidModelVersion("The model file changed since it was registered.")
    # The card as it is now: a version converted again since (`ml.conversion --force`)
    # serves its new runtimes.
    chosen.card = card.model_dump(mode="json")
    if chosen.status == "active":
        return chosen
    await session.execute(
        update(ModelVersion).where(ModelVersion.status == "active").values(status="archived")
    )
    chosen.status = "active"
    chosen.activated_by = actor
    chosen.activated_at = datetime.now(UTC)
    await session.flush()
    logger.info("activated model version", extra={"version": version, "actor": actor})
    return chosen


def reports_of(models_dir: Path, version: ModelVersion) -> dict[str, Any]:
    """The training run's reports the card names, read from the version folder."""
    folder = models_dir.resolve() / version.path
    reports: dict[str, Any] = {}
    for name, relative in (version.card.get("reports") or {}).items():
        path = (folder / relative).resolve()
        if path.is_relative_to(folder) and path.is_file():
            try:
                reports[name] = json.loads(path.read_text())
            except ValueError:
                continue
    return reports


REPORTS_FOLDER = "reports"


def report_figures(models_dir: Path, version: ModelVersion) -> list[str]:
    """The PNG figures of the training run (plots, sample grids), relative to `reports/`."""
    folder = (models_dir.resolve() / version.path / REPORTS_FOLDER).resolve()
    if not folder.is_dir():
        return []
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.png") if p.is_file())


def report_figure(models_dir: Path, version: ModelVersion, relative: str) -> Path:
    """One figure's file; only PNGs inside the version's `reports/` folder are served."""
    folder = (models_dir.resolve() / version.path / REPORTS_FOLDER).resolve()
    path = (folder / relative).resolve()
    if path.suffix != ".png" or not path.is_relative_to(folder) or not path.is_file():
        raise ServiceError(
            404,
            f"Model version {version.version!r} has no figure {relative!r}.",
            code="figure_not_found",
        )
    return path


async def activate_newest_if_none(session: AsyncSession, models_dir: Path) -> str | None:
    """At start: when nothing is active, register the version folders found and activate
    the newest valid one. Returns the version activated, if any."""
    if await active(session) is not None:
        return None
    registered = {v.version: v for v in await list_all(session)}
    candidates: list[tuple[str, str]] = []
    for folder in list_versions(models_dir):
        try:
            card = read_verified_card(folder)
        except InvalidModelVersion as exc:
            logger.warning("not registering %s: %s", folder.name, exc.message)
            continue
        if card.version not in registered:
            await register(session, models_dir, folder.name, actor="system")
        candidates.append((card.created_at.isoformat(), card.version))
    if not candidates:
        return None
    newest = max(candidates)[1]
    await activate(session, newest, "system", models_dir)
    return newest
