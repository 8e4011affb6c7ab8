"""`python -m slide_service.migrate [upgrade|downgrade] [revision]`: creates the database
`slides` if needed and runs its migrations."""

import sys
from pathlib import Path

from common.migrations import main
from slide_service.audit.models import AuditEvent
from slide_service.settings import get_settings

# The service's own login may add audit events and read them, never change or remove one.
APPEND_ONLY_TABLES = (AuditEvent.__tablename__,)

if __name__ == "__main__":
    main(Path(__file__).parent, get_settings(), sys.argv[1:], APPEND_ONLY_TABLES)
