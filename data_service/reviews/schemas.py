import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ReviewCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    verdict: Literal["agree", "disagree"]
    corrected_label: str | None = Field(default=None, max_length=32)
    comment: str | None = Field(default=None, max_length=4000)

    @model_validator(mode="after")
    def _correction_goes_with_disagreement(self) -> "ReviewCreate":
        if self.verdict == "disagree" and not self.corrected_label:
            raise ValueError("a disagreement needs the corrected_label")
        if self.verdict == "agree" and self.corrected_label is not None:
            raise ValueError("an agreement takes no corrected_label")
        return self


class ReviewOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    prediction_id: uuid.UUID
    reviewer: uuid.UUID
    verdict: str
    corrected_label: str | None
    comment: str | None
    is_current: bool
    created_at: datetime
