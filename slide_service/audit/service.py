"""The audit trail of slides: uploads, deletions and reads of associated images, each
recorded in the transaction of what it records."""

from common.audit import AuditTrail
from slide_service.audit.models import AuditEvent

trail = AuditTrail(AuditEvent)
record = trail.record
