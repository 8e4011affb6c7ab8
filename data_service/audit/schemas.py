from common.audit import AuditEventOut as AuditEventOut
