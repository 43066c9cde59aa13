"""What the settler weighs besides the video's own quiet time.

- Its metadata file (``clip.mp4.meta.json``) must be quiet too: written or
  changed since last seen restarts the video's quiet period. With
  ``metadata: required`` a quiet video without one waits for it, at most
  ``metadata_wait_seconds``, then goes on (and fails for the lack of it).
- In an ``after: leave`` folder the file stays where it is after ingest, so
  every scan finds it again: a version (path, size, mtime) that already
  finished is not taken again (``already_taken``, also read by the rebuild,
  ``explain`` and ``scan --dry-run``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from watcherd.config import FolderConfig
from watcherd.intake.metadata import metadata_file_for
from watcherd.names import display
from watcherd.state.schema import FileRecord
from watcherd.state.store import Store

Signature = tuple[int, int, int, int]  # size, mtime_ns, ctime_ns, inode
# Versions left in place remembered in memory (about 200 bytes each); past this,
# the database answers for the rest on each rescan (one indexed query per file).
LEFT_IN_MEMORY_LIMIT = 200_000


def signature_of(st: os.stat_result) -> Signature:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def signature_at(path: str) -> Signature | None:
    try:
        return signature_of(os.stat(path))
    except OSError:
        return None


@dataclass
class MetadataWatch:
    """One candidate's metadata file as last seen, and since when it is awaited."""
    signature: Signature | None  # None while absent
    waiting_since: float | None = None  # metadata: required, and none there yet

    @classmethod
    def start(cls, path: str, folder: FolderConfig) -> MetadataWatch:
        return cls(signature_at(metadata_file_for(path, folder)))

    def verdict(self, path: str, folder: FolderConfig, now: float) -> tuple[str, str | None]:
        """("changed" | "waiting" | "settled", what to note when a wait begins)."""
        source = metadata_file_for(path, folder)
        found = signature_at(source)
        if found != self.signature:
            self.signature = found
            return "changed", None
        if found is not None or folder.metadata.mode != "required":
            return "settled", None
        wait = folder.metadata.wait_seconds
        if self.waiting_since is None:
            self.waiting_since = now
            return "waiting", (f"settled; waiting up to {wait:g}s for its metadata file "
                               f"{display(Path(source).name)} (metadata: required)")
        return ("settled" if now - self.waiting_since >= wait else "waiting"), None


def already_taken(store: Store, path: str, st: os.stat_result,
                  folder: FolderConfig) -> FileRecord | None:
    """In an ``after: leave`` folder, the finished row of this very version of ``path``.

    A version is the path with its size and mtime: the same bytes touched or
    rewritten are a new version, which dedupe (by sha256) then joins to the
    earlier task instead of uploading it again.
    """
    if folder.after != "leave":
        return None
    record = store.last_finished(path)
    if record is None or (record.size, record.mtime_ns) != (st.st_size, st.st_mtime_ns):
        return None
    return record


class LeftInPlace:
    """``already_taken`` for every scan hint, with a query only for a version not seen yet."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._versions: dict[str, tuple[int, int]] = {}

    def seen(self, path: str, st: os.stat_result) -> bool:
        """Known as taken, without asking the database (a new version is not)."""
        return self._versions.get(path) == (st.st_size, st.st_mtime_ns)

    def taken(self, path: str, st: os.stat_result, folder: FolderConfig) -> bool:
        if folder.after != "leave":
            return False
        version = (st.st_size, st.st_mtime_ns)
        if self._versions.get(path) == version:
            return True
        if already_taken(self.store, path, st, folder) is None:
            return False
        if len(self._versions) < LEFT_IN_MEMORY_LIMIT:
            self._versions[path] = version
        return True
