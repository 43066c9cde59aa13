"""What the upload worker settles before sending a file: whether it needs sending at all
(``reuse``: indexed from an asset another index's file uploaded, or waiting for that
upload) and on which path (``method``: parked in the inbox while no path its folder
allows is open). Each answer is written to the file's row and history here, so the
worker only asks."""

from __future__ import annotations

import logging
import queue
import threading

from watcherd.config import FolderConfig
from watcherd.ingest.method import UploadPaths, Waiting
from watcherd.ingest.reuse import reuse_asset, waiting_detail
from watcherd.state.states import State
from watcherd.state.store import FileRecord, Store

logger = logging.getLogger(__name__)

# A file waiting for another index's upload of its content looks again this often
# (from the back of the queue, so it never blocks other files).
ASSET_RECHECK_SECONDS = 1.0


class Routing:
    def __init__(self, store: Store, paths: UploadPaths, work: queue.Queue[int],
                 stop: threading.Event) -> None:
        self.store, self.paths, self.work, self.stop = store, paths, work, stop

    def from_asset(self, record: FileRecord, folder: FolderConfig) -> bool:
        """One upload, many indexes: True when the file needs no upload of its own now
        (indexed from an earlier asset, or waiting for one being uploaded)."""
        found = reuse_asset(self.store, record, folder.upload_method)
        if found.waiting and found.source is not None:
            self.wait_for_asset(record, found.source)
        return found.indexed or found.waiting

    def wait_for_asset(self, record: FileRecord, holder: FileRecord) -> None:
        """Back of the queue until ``holder``'s asset is ready (or its upload ends)."""
        if self.store.get(record.id).state != State.QUEUED:
            self.store.transition(record.id, State.QUEUED, waiting_detail(holder),
                                  task_may_exist=0)
        self.stop.wait(ASSET_RECHECK_SECONDS)
        self.work.put(record.id)

    def path(self, record: FileRecord, folder: FolderConfig) -> str | None:
        """The path this file takes now, or None: it stays queued in the inbox, parked
        until the pause check sees a path its folder allows open again."""
        route = self.paths.route_or_park(record.id, folder.upload_method, record.size or 0)
        if not isinstance(route, Waiting):
            return route
        if route.news:
            logger.info("%s: waiting for an upload path: %s", record.path, route.reason)
            self.store.transition(record.id, State.QUEUED,
                                  f"waiting for an upload path: {route.reason}")
        return None

    def closed(self, record: FileRecord, folder: FolderConfig, detail: str) -> None:
        """A path was closed under this file: back to the queue, or parked."""
        if self.store.get(record.id).state != State.QUEUED:
            self.store.transition(record.id, State.QUEUED, detail, task_may_exist=0)
        if self.path(record, folder) is not None:
            self.work.put(record.id)
