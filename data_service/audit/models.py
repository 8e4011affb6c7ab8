from common.audit import AuditEventColumns
from data_service.database import Base


class AuditEvent(AuditEventColumns, Base):
    pass
