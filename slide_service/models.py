"""Every table of the slide service, imported in one place for Alembic's metadata."""

from slide_service.audit.models import AuditEvent
from slide_service.slides.models import Slide

__all__ = ["AuditEvent", "Slide"]
