import uuid

from fastapi import APIRouter

from common.db import SessionDep
from data_service.deps import Reader, Writer
from data_service.reviews import service
from data_service.reviews.schemas import ReviewCreate, ReviewOut

router = APIRouter(prefix="/predictions", tags=["reviews"])


@router.post(
    "/{prediction_id}/reviews",
    response_model=ReviewOut,
    status_code=201,
    summary="Agree, or disagree with the corrected label",
)
async def review_prediction(
    prediction_id: uuid.UUID, body: ReviewCreate, who: Writer, session: SessionDep
) -> ReviewOut:
    review = await service.create(session, prediction_id, body, who.subject)
    await session.commit()
    return ReviewOut.model_validate(review)


@router.get(
    "/{prediction_id}/reviews",
    response_model=list[ReviewOut],
    summary="Every review of the prediction, oldest first",
)
async def review_history(
    prediction_id: uuid.UUID, _: Reader, session: SessionDep
) -> list[ReviewOut]:
    return [ReviewOut.model_validate(r) for r in await service.history(session, prediction_id)]
