"""`python -m data_service.migrate [upgrade|downgrade] [revision]`: creates the database
`data` if needed and runs its migrations."""

import sys
from pathlib import Path

from common.migrations import main
from data_service.settings import get_settings

if __name__ == "__main__":
    main(Path(__file__).parent, get_settings().database_url, sys.argv[1:])
