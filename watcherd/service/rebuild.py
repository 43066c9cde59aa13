"""When the state database is damaged: move it aside and rebuild it.

Crashing in a loop on a corrupt database would stop every upload, and
silently starting empty would forget which files were already paid for. So
the damaged file is kept for inspection, loudly, and a new database is
rebuilt from what survives outside it:

* every sidecar in done/ and failed/ becomes a finished row again, so the
  same content is still recognised (``dedupe``) and history stays visible;
* every file still in an inbox becomes a settling row marked "an upload may
  have happened at an unknown time" (``upload_started_at = 0``,
  ``task_may_exist = 1``), so before sending it the worker asks Twelve Labs
  for a task with the same name whose video carries the file's sha256
  (``dedupe.find_earlier_task``) and adopts it when there is one.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

from watcherd.config import Config, FolderConfig
from watcherd.ingest.mover import TEMP_PREFIX
from watcherd.ingest.sidecar import Sidecar, read_sidecar
from watcherd.intake.watcher import scan_folder
from watcherd.state.states import State
from watcherd.state.store import CorruptDatabase, Store

logger = logging.getLogger(__name__)


def move_aside(exc: CorruptDatabase, clock: Callable[[], float] = time.time) -> Path:
    """Rename the database (and its WAL and shared-memory files) out of the way."""
    stamp = datetime.fromtimestamp(clock()).strftime("%Y%m%dT%H%M%S")
    aside = exc.path.with_name(f"{exc.path.name}.corrupt-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        source = Path(f"{exc.path}{suffix}")
        if source.exists():
            os.replace(source, f"{aside}{suffix}")
    return aside


def rebuild(config: Config, store: Store) -> tuple[int, int]:
    """Refill an empty store from sidecars and inbox files; returns (finished, pending)."""
    finished = pending = 0
    for folder in config.folders:
        for media, document in _sidecars(folder):
            _add_finished(store, folder, media, document)
            finished += 1
        for path in scan_folder(folder):
            if store.active_by_path(path) is None:
                store.add(path=path, folder=str(folder.path), index_id=folder.index_id,
                          upload_started_at=0.0, task_may_exist=1,
                          detail="database rebuilt: Twelve Labs is asked before any upload")
                pending += 1
    return finished, pending


def _sidecars(folder: FolderConfig) -> Iterator[tuple[Path, Sidecar]]:
    for base in (folder.done_dir, folder.failed_dir):
        for sidecar in sorted(base.rglob("*.json")) if base.is_dir() else []:
            media = sidecar.with_suffix("")
            if sidecar.name.startswith(TEMP_PREFIX) or not media.exists():
                continue
            try:
                document = read_sidecar(sidecar)
            except (OSError, ValueError) as exc:
                logger.warning("rebuild: skipping unreadable sidecar %s: %s", sidecar, exc)
                continue
            if document is not None:
                yield media, document


def _add_finished(store: Store, folder: FolderConfig, media: Path, document: Sidecar) -> None:
    ready = document["status"] == "ready"
    store.add(
        path=str(document["source_path"]), folder=str(folder.path),
        index_id=str(document["index_id"] or folder.index_id),
        state=State.DONE if ready else State.FAILED,
        detail=f"database rebuilt from {media}.json",
        outcome="ready" if ready else "failed", dest_path=str(media),
        reason=document["reason"], error_code=document["error_code"], rule=document["rule"],
        task_id=document["task_id"], video_id=document["video_id"], size=document["size"],
        upload_method=document["upload_method"], asset_id=document["asset_id"],
        indexed_asset_id=document["indexed_asset_id"],
        sha256=document["sha256"], attempts=document["attempts"], facts=document["media"],
        task_json=document["task"], finished_at=media.stat().st_mtime,
    )
