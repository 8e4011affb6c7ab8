from common.audit import AuditEventColumns
from slide_service.database import Base


class AuditEvent(AuditEventColumns, Base):
    pass
