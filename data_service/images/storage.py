"""Image files, named by the SHA-256 of their bytes, written so that a crash never leaves a
half-written file under a real name: temporary file, fsync, rename, fsync of the folder.
The folder is checked by `/ready`."""

import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from common.storage import check_writable_folder, fsync_folder

TEMP_PREFIX = ".tmp-"


class ImageStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    def write(self, sha256: str, data: bytes) -> Path:
        target = self.path_for(sha256)
        if target.exists():  # same name, same bytes
            # Renewed, so that the orphan sweep's grace period covers this upload too: the
            # file may be an orphan left by a crash, about to gain a record.
            os.utime(target)
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=TEMP_PREFIX)
        try:
            with os.fdopen(descriptor, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        fsync_folder(target.parent)  # the rename itself survives a power cut
        return target

    def read(self, sha256: str) -> bytes:
        return self.path_for(sha256).read_bytes()

    def files_older_than(self, seconds: float) -> Iterator[tuple[str, Path]]:
        """(name, path) of every stored or temporary file last changed before `seconds` ago."""
        if not self.root.is_dir():
            return
        for path in self.root.glob("*/*"):
            if path.is_file() and self.older_than(path, seconds):
                yield path.name, path

    @staticmethod
    def older_than(path: Path, seconds: float) -> bool:
        try:
            return path.stat().st_mtime < time.time() - seconds
        except FileNotFoundError:
            return False

    def check_writable(self) -> str | None:
        """Raise unless a file can be created, synced and removed here (readiness)."""
        return check_writable_folder(self.root)
