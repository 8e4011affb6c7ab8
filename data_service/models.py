"""Every table of the data service, imported in one place for Alembic's metadata and the
tests that compare it with the migrations. Each table is defined in its feature's
`models.py`; foreign keys name tables by string, so those modules need not import each other.
"""

from data_service.audit.models import AuditEvent
from data_service.images.models import Image
from data_service.patients.models import Patient
from data_service.predictions.models import Prediction
from data_service.reviews.models import Review
from data_service.stats.models import (
    PredictionDayCount,
    PredictionDayLatency,
    PredictionDayReason,
    ReviewDayCount,
)

__all__ = [
    "AuditEvent",
    "Image",
    "Patient",
    "Prediction",
    "PredictionDayCount",
    "PredictionDayLatency",
    "PredictionDayReason",
    "Review",
    "ReviewDayCount",
]
