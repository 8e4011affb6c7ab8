"""The folder that holds image files, and its readiness check."""

import os
import tempfile
from pathlib import Path


def check_storage_writable(storage_dir: Path) -> str | None:
    """Raise unless a file can be created, synced and removed in `storage_dir`."""
    storage_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=storage_dir, prefix=".ready-", delete=True) as probe:
        probe.write(b"ok")
        probe.flush()
        os.fsync(probe.fileno())
    return None
