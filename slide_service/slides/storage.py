"""Slide files, content-addressed: `<root>/<sha[:2]>/<sha>/<name>`, where the folder holds one
slide file or the members of an uploaded zip (MIRAX, DICOM series).

An upload is streamed into its own folder under `<root>/tmp`, hashed and size-checked as it
arrives, fsynced, checked by OpenSlide, and only then renamed into place in one step (a folder
rename), so a failure at any step leaves nothing under a real name; whatever stays in `tmp`
after a crash is removed once nothing has written to it for an hour. The same content
uploaded again finds its folder already there and leaves it as it is."""

import contextlib
import hashlib
import os
import shutil
import time
import uuid
from pathlib import Path

from common.storage import check_writable_folder, fsync_folder

TEMP = "tmp"
TRASH_PREFIX = ".deleted-"
READINESS = ".ready"


def _last_written(folder: Path) -> float:
    """The newest modification time in the folder's tree (the folder's own included)."""
    newest = folder.stat().st_mtime
    for parent, _dirs, names in os.walk(folder):
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                newest = max(newest, os.stat(os.path.join(parent, name)).st_mtime)
    return newest


class SlideStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.temp_root = root / TEMP

    def folder_for(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    def path_of(self, content_path: str) -> Path:
        return self.root / content_path

    def new_upload(self) -> "Upload":
        folder = self.temp_root / uuid.uuid4().hex
        folder.mkdir(parents=True)
        return Upload(folder)

    def place(self, upload_content: Path, sha256: str) -> Path:
        """Move the checked content folder to its address; when it is there already (the same
        bytes uploaded before), keep that one. Returns the folder at the address."""
        target = self.folder_for(sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(upload_content, target)
        except OSError:
            if not target.is_dir():
                raise
            return target  # same content stored before (or by a concurrent upload)
        fsync_folder(target.parent)
        return target

    def set_aside(self, sha256: str) -> Path | None:
        """Rename the content's folder out of its address (undone by `restore`); the caller
        removes it with `discard` once the record's deletion is committed."""
        folder = self.folder_for(sha256)
        trash = folder.with_name(f"{TRASH_PREFIX}{sha256}-{uuid.uuid4().hex[:8]}")
        try:
            os.rename(folder, trash)
        except FileNotFoundError:
            return None
        return trash

    def restore(self, trash: Path, sha256: str) -> None:
        """Put a set-aside folder back after its deletion failed. An upload of the same bytes
        may have placed a folder there meanwhile: same content, so that one stays."""
        try:
            os.rename(trash, self.folder_for(sha256))
        except OSError:
            if not self.folder_for(sha256).is_dir():
                raise
            shutil.rmtree(trash, ignore_errors=True)

    @staticmethod
    def discard(folder: Path) -> None:
        shutil.rmtree(folder, ignore_errors=True)

    def sweep_temporary(self, idle_s: float) -> int:
        """Remove upload folders nothing has written to for `idle_s` (left by a crash, of this
        process or of another replica on the same volume), and set-aside folders as old. An
        upload under way writes all the time, so it is never idle that long."""
        removed = 0
        cutoff = time.time() - idle_s
        leftovers = list(self.temp_root.glob("*")) if self.temp_root.is_dir() else []
        leftovers += list(self.root.glob(f"*/{TRASH_PREFIX}*"))
        for path in leftovers:
            with contextlib.suppress(FileNotFoundError):
                if _last_written(path) < cutoff:
                    shutil.rmtree(path, ignore_errors=True)
                    removed += 1
        return removed

    def check_writable(self) -> str | None:
        # Its own folder: probes never show up among the uploads in `tmp`.
        return check_writable_folder(self.root / READINESS)


class Upload:
    """One upload's private folder: the streamed file, then (for a zip) its extracted
    members. Removed whole by `discard` unless its content was placed."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.content = folder / "content"
        self.content.mkdir()
        self.sha256 = hashlib.sha256()
        self.size = 0
        self._file: int | None = None
        self.path: Path | None = None

    def open(self, name: str) -> None:
        self.path = self.folder / name
        self._file = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)

    def write(self, chunks: list[bytes]) -> None:
        """Hash and write these chunks (called off the event loop: both release the GIL)."""
        assert self._file is not None
        for chunk in chunks:
            self.sha256.update(chunk)
            view = memoryview(chunk)
            while view:
                written = os.write(self._file, view)
                view = view[written:]
            self.size += len(chunk)

    def finish(self) -> None:
        """Flush the file to disk and close it."""
        assert self._file is not None
        os.fsync(self._file)
        os.close(self._file)
        self._file = None

    def discard(self) -> None:
        if self._file is not None:
            os.close(self._file)
            self._file = None
        shutil.rmtree(self.folder, ignore_errors=True)
