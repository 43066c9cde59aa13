"""From an uploaded asset to its indexed asset, exactly once (multipart path).

A row arrives here in ``indexing`` with its ``asset_id`` and no
``indexed_asset_id``. Each turn takes it one step further:

1. ``GET /assets/{id}`` until the asset is ``ready``: every asset starts
   ``processing``, small ones too; ``failed`` raises ``AssetFailed`` (the
   file goes to failed/ with the API's message).
2. Intent before effect: ``task_may_exist = 1`` is stored before
   ``POST /indexes/{id}/indexed-assets``, and cleared only by a definitive
   answer. Neither create endpoint has an idempotency key, so while the flag
   is set (a lost answer, a retry, a crash or restart in between), the next
   turn first asks ``GET /assets/{asset_id}/indexed-assets`` and adopts what
   it lists for this index instead of indexing the asset a second time.
3. The 202's ``_id`` is stored as ``indexed_asset_id`` and ``task_id`` (the
   job the poller follows) in the transaction that receives it; ``video_id``
   is the id the index knows the video by: the indexed asset's, unless the
   answer names another.

Errors go back to the poller by type: ``TransientError`` (backoff, and the
shared gate for the POST, which shares the "Index" rate limit with
``POST /tasks``), ``UploadsPaused``, ``ApiRejected`` (the index may be gone),
``AssetFailed``. Facts: research round 2, sections 0.3, 0.4 and 1.3.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from watcherd.errors import ApiRejected, AssetFailed, TransientError
from watcherd.ingest.gate import UploadGate
from watcherd.ingest.indexpause import says_not_found
from watcherd.ingest.jobs import AssetCalls
from watcherd.ingest.usermetadata import user_metadata_for
from watcherd.state.states import State
from watcherd.state.store import FileRecord, Store

logger = logging.getLogger(__name__)

NOT_READY_CODE = "asset_not_ready"


class AssetIndexer:
    def __init__(self, *, store: Store, assets: AssetCalls, gate: UploadGate,
                 stop: threading.Event) -> None:
        self.store = store
        self.assets = assets
        self.gate = gate
        self.stop = stop

    def advance(self, record: FileRecord) -> None:
        """One step for ``record`` (see the module): wait for the asset, or index it once."""
        if not record.task_may_exist and not self._asset_ready(record):
            return
        if not self.gate.wait(self.stop, 0.0):
            return  # backing off or paused: uploads and indexing share the limit
        if record.task_may_exist:
            found = self._indexed_before(record)
            if found is not None:
                self._record(record, found, f"adopted indexed asset {found['_id']}: an "
                             "earlier request whose answer was not seen created it")
                return
        else:
            self.store.update(record.id, task_may_exist=1)
        self._index(record)

    def _asset_ready(self, record: FileRecord) -> bool:
        asset_id = record.asset_id or ""
        asset = self.assets.get_asset(asset_id)
        status = str(asset.get("status") or "unknown")
        if status == "failed":
            error = asset.get("error")
            message = error.get("message") if isinstance(error, dict) else error
            raise AssetFailed(asset_id, str(message or "no reason given"), asset)
        if status != record.remote_status:
            self.store.update(record.id, remote_status=status)
            logger.info("%s: asset %s is %s", record.path, asset_id, status)
        return status == "ready"

    def _indexed_before(self, record: FileRecord) -> dict[str, Any] | None:
        """The indexed asset an earlier request made from this asset in this index."""
        listed = self.assets.list_indexed_assets_by_asset(record.asset_id or "")
        ours = [item for item in listed if item["index_id"] == record.index_id]
        # Where the list did not say which index (its shape is inferred), the index knows.
        ours += [item for item in listed if not item["index_id"] and self._in_index(record, item)]
        if len(ours) > 1:
            logger.warning("%s: asset %s is indexed %d times in index %s (%s); following the "
                           "first", record.path, record.asset_id, len(ours), record.index_id,
                           ", ".join(item["_id"] for item in ours))
        return ours[0] if ours else None

    def _in_index(self, record: FileRecord, item: dict[str, str]) -> bool:
        try:
            self.assets.get_indexed_asset(record.index_id, item["_id"])
        except ApiRejected as exc:
            if says_not_found(exc):
                return False
            raise
        return True

    def _index(self, record: FileRecord) -> None:
        try:
            made = self.assets.create_indexed_asset(
                record.index_id, record.asset_id or "", user_metadata=user_metadata_for(record))
        except TransientError as exc:
            self.gate.note_failure(exc)
            raise  # task_may_exist stays set: the next turn looks before it asks again
        except ApiRejected as exc:
            self.store.update(record.id, task_may_exist=0)  # refused: nothing was made
            if exc.code == NOT_READY_CODE:
                logger.info("%s: asset %s not ready for indexing yet", record.path,
                            record.asset_id)
                return
            raise
        self.gate.note_success()
        self._record(record, made, f"indexing asset {record.asset_id} as indexed asset "
                     f"{made['_id']}")

    def _record(self, record: FileRecord, made: dict[str, Any], how: str) -> None:
        indexed_id = str(made["_id"])
        self.store.transition(
            record.id, State.INDEXING, how, expect=(State.INDEXING,),
            indexed_asset_id=indexed_id, task_id=indexed_id,
            video_id=str(made.get("video_id") or indexed_id), task_may_exist=0,
            remote_status=None)
        logger.info("%s: %s", record.path, how)  # same state: the store logs no change
