"""Every table of the slide service, imported in one place for Alembic's metadata."""

from slide_service.analyses.models import (
    Analysis,
    AnalysisChunk,
    AnalysisMask,
    AnalysisResult,
    Region,
    RegionReview,
    RegionTile,
    SlideReview,
)
from slide_service.audit.models import AuditEvent
from slide_service.slides.models import Slide

__all__ = [
    "Analysis",
    "AnalysisChunk",
    "AnalysisMask",
    "AnalysisResult",
    "AuditEvent",
    "Region",
    "RegionReview",
    "RegionTile",
    "Slide",
    "SlideReview",
]
