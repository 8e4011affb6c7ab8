"""`python -m inference_service.migrate [upgrade|downgrade] [revision]`: creates the database
`inference` if needed and runs its migrations."""

import sys
from pathlib import Path

from common.migrations import main
from inference_service.settings import get_settings

if __name__ == "__main__":
    main(Path(__file__).parent, get_settings(), sys.argv[1:])
