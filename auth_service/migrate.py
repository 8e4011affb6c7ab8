"""`python -m auth_service.migrate [upgrade|downgrade] [revision]`: creates the database
`auth` if needed and runs its migrations."""

import sys
from pathlib import Path

from auth_service.settings import get_settings
from common.migrations import main

if __name__ == "__main__":
    main(Path(__file__).parent, get_settings(), sys.argv[1:])
