"""What the running daemon knows that the database does not, published for the CLI.

Observer modes and health, the last scan of each folder, upload progress and
rate, and whether uploads are paused (all of them, or one index's folders)
or backing off live in memory. The main thread writes them as one JSON row
(its shape: ``state.runtime``) every few seconds; ``watcherd status`` reads
it and treats a row older than ``STALE_SECONDS`` (or a dead pid) as "daemon
not running".
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from watcherd import __version__
from watcherd.state.runtime import (
    FolderWatch,
    LiveDaemon,
    RuntimeSnapshot,
    UploadPathsSnapshot,
    UploadProgress,
)

if TYPE_CHECKING:  # ``watcherd status`` reads the snapshot: no watchdog, no upload code
    from watcherd.ingest.gate import UploadGate
    from watcherd.ingest.progress import Progress
    from watcherd.intake.watcher import Scanner, Watcher
    from watcherd.state.store import Store

STALE_SECONDS = 15.0  # several missed publications (every 2 s)


def build_snapshot(*, watcher: Watcher, scanner: Scanner, progress: Progress,
                   gate: UploadGate, problems: list[str], started_at: float,
                   index_pauses: dict[str, str] | None = None,
                   upload_paths: UploadPathsSnapshot | None = None) -> RuntimeSnapshot:
    now = time.time()
    uploads: list[UploadProgress] = [
        {"file_id": file_id, "path": path, "sent": done, "total": total,
         "rate": progress.rate(file_id), "chunks": _listed(progress.chunks_of(file_id))}
        for file_id, path, done, total in progress.uploads()]
    folders: list[FolderWatch] = [
        {"path": str(w.folder.path), "mode": w.mode, "healthy": w.healthy,
         "problem": w.problem(), "last_scan": scanner.last_scan.get(str(w.folder.path))}
        for w in watcher.watches]
    return {
        "pid": os.getpid(),
        "version": __version__,
        "started_at": started_at,
        "folders": folders,
        "uploads": uploads,
        "gate": gate.snapshot(now),
        "paused_indexes": index_pauses or {},
        "upload_paths": upload_paths,
        "problems": problems,
    }


def _listed(chunks: tuple[int, int] | None) -> list[int] | None:
    return list(chunks) if chunks else None


def daemon_state(store: Store, now: float | None = None) -> LiveDaemon | None:
    """The published snapshot if a live daemon wrote it recently, else None."""
    found = store.runtime()
    if found is None:
        return None
    snapshot, written = found
    now = time.time() if now is None else now
    if now - written > STALE_SECONDS or not _alive(snapshot.get("pid")):
        return None
    return {**snapshot, "seen_at": written}


def _alive(pid: object) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but another user's (e.g. the service user)
        return True
    return True
