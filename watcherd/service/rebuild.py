"""When the state database is damaged: move it aside and rebuild it.

Crashing in a loop on a corrupt database would stop every upload, and
silently starting empty would forget which files were already paid for. So
the damaged file is kept for inspection, loudly, and a new database is
rebuilt from what survives outside it:

* every sidecar in done/ and failed/ becomes a finished row again, so the
  same content is still recognised (``dedupe``) and history stays visible;
  so does every record in the ``records_dir`` of an ``after: leave`` or
  ``delete`` folder, and a file left in place whose version (path, size,
  mtime) has a record is not taken again (``settle.already_taken``);
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
from watcherd.intake.alongside import already_taken
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
        for media, document in [*_sidecars(folder), *_records(folder)]:
            _add_finished(store, folder, media, document)
            finished += 1
        for path in scan_folder(folder):
            if store.active_by_path(path) is None and not _left_as_taken(store, path, folder):
                store.add(path=path, folder=str(folder.path), index_id=folder.index_id,
                          upload_started_at=0.0, task_may_exist=1,
                          detail="database rebuilt: Twelve Labs is asked before any upload")
                pending += 1
    return finished, pending


def _sidecars(folder: FolderConfig) -> Iterator[tuple[Path, Sidecar]]:
    """Sidecars beside moved files (with leave nothing moves; with delete only failures)."""
    bases = {"move": (folder.done_dir, folder.failed_dir), "delete": (folder.failed_dir,)}
    for base in bases.get(folder.after, ()):
        yield from _read_all(base, need_media=True)


def _records(folder: FolderConfig) -> Iterator[tuple[Path, Sidecar]]:
    """``records_dir``: the sidecars of files left in place or deleted (no media beside them)."""
    if folder.after != "move" and folder.records_dir is not None:
        for media, document in _read_all(folder.records_dir, need_media=False):
            if document["after"] in ("leave", "delete"):
                yield media, document


def _read_all(base: Path, *, need_media: bool) -> Iterator[tuple[Path, Sidecar]]:
    for sidecar in sorted(base.rglob("*.json")) if base.is_dir() else []:
        media = sidecar.with_suffix("")
        if sidecar.name.startswith(TEMP_PREFIX) or (need_media and not media.exists()):
            continue
        try:
            document = read_sidecar(sidecar)
        except (OSError, ValueError) as exc:
            logger.warning("rebuild: skipping unreadable sidecar %s: %s", sidecar, exc)
            continue
        if document is not None:
            yield media, document


def _left_as_taken(store: Store, path: str, folder: FolderConfig) -> bool:
    try:
        return already_taken(store, path, os.stat(path), folder) is not None
    except OSError:
        return False


def _add_finished(store: Store, folder: FolderConfig, media: Path, document: Sidecar) -> None:
    ready = document["status"] == "ready"
    store.add(
        path=str(document["source_path"]), folder=str(folder.path),
        index_id=str(document["index_id"] or folder.index_id),
        state=State.DONE if ready else State.FAILED,
        detail=f"database rebuilt from {media}.json",
        outcome="ready" if ready else "failed",
        dest_path=str(media) if document["after"] in (None, "move") else document["moved_to"],
        mtime_ns=document["mtime_ns"],
        reason=document["reason"], error_code=document["error_code"], rule=document["rule"],
        task_id=document["task_id"], video_id=document["video_id"], size=document["size"],
        upload_method=document["upload_method"], asset_id=document["asset_id"],
        indexed_asset_id=document["indexed_asset_id"],
        sha256=document["sha256"], attempts=document["attempts"], facts=document["media"],
        task_json=document["task"], finished_at=_finished_at(media),
    )


def _finished_at(media: Path) -> float:
    """When the file finished, as its sidecar's time says (a deleted file has only that)."""
    for path in (media, media.with_name(media.name + ".json")):
        try:
            return path.stat().st_mtime
        except OSError:
            continue
    return time.time()
