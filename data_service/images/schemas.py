import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict


class ImageOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    sha256: str
    content_type: str
    width: int
    height: int
    byte_size: int
    patient_id: uuid.UUID | None
    uploaded_by: uuid.UUID
    created_at: datetime
