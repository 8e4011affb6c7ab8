"""The audit trail: one event per write, in the same transaction as the write."""

from common.audit import AuditTrail
from data_service.audit.models import AuditEvent

trail = AuditTrail(AuditEvent)
record = trail.record
