"""File-system plumbing of the services that keep files: the readiness check of their folder
and the fsync of a folder after a rename, so the rename itself survives a power cut."""

import os
import tempfile
from pathlib import Path


def check_writable_folder(root: Path) -> str | None:
    """Raise unless a file can be created, synced and removed in `root` (readiness)."""
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=root, prefix=".ready-", delete=True) as probe:
        probe.write(b"ok")
        probe.flush()
        os.fsync(probe.fileno())
    return None


def fsync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
