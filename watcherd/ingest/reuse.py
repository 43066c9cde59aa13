"""One upload, many indexes: content already uploaded as an asset is indexed from it.

``dedupe`` answers "is this content already in *this* index?". This module answers the
next question on the multipart path, where the upload (an asset) and the indexing (an
indexed asset per index) are separate steps: is this content already an asset that
another index was indexed from? Then the asset was ready, and the file goes straight to
``indexing`` with that ``asset_id``: the indexing step indexes it into this file's
index, and not one byte is sent again. If another index's file is uploading the same
content right now, this one waits for it (at the back of the queue, like a duplicate
waits for its holder) rather than upload it a second time.

Only for folders that dedupe and may use multipart (``upload_method`` auto or
multipart): a folder on ``tasks`` sends its own bytes, as it always did.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import watcherd.state.queries as queries
from watcherd.config import MULTIPART, TASKS
from watcherd.state.states import State
from watcherd.state.store import FileRecord, Store

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reuse:
    """What became of a file whose content may already be an asset.

    ``indexed``: it now waits in ``indexing`` to be indexed from ``source``'s asset.
    ``waiting``: ``source`` is uploading the same content for another index.
    Neither: no asset to share; the file is uploaded as usual.
    """

    source: FileRecord | None = None
    indexed: bool = False
    waiting: bool = False


def reuse_asset(store: Store, record: FileRecord, method: str) -> Reuse:
    """Index ``record`` from an earlier asset of its content, or say whom to wait for."""
    if method == TASKS or record.sha256 is None:
        return Reuse()
    source = queries.ready_asset(store, record)
    if source is not None:
        detail = (f"same content as {source.path}, already uploaded once as asset "
                  f"{source.asset_id} (indexed into {source.index_id}): indexed from that "
                  f"asset into {record.index_id}, not uploaded again")
        store.transition(record.id, State.INDEXING, detail, upload_method=MULTIPART,
                         asset_id=source.asset_id, upload_started_at=store.clock(),
                         uploaded_at=store.clock(), task_may_exist=0)
        return Reuse(source, indexed=True)
    flying = queries.asset_in_flight(store, record)
    if flying is not None:
        return Reuse(flying, waiting=True)
    return Reuse()


def waiting_detail(holder: FileRecord) -> str:
    return (f"waiting for {holder.path}: same content, being uploaded as an asset for index "
            f"{holder.index_id}; this file will be indexed from it, not uploaded again")
