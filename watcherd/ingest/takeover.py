"""Several hosts: continue a file from what its claim knows, never upload it twice.

A claim carries the remote ids its owners got (the task, or the multipart
session, asset and indexed asset), the move's target and a rejection's
outcome. When this host takes a claim over (its owner's lease ran out) or
finds one of its own after a restart, the file's local row takes them over:
a task is followed (``indexing``), a decided outcome is finalized (into the
recorded target: a move cut short is finished), and an upload that may have
reached Twelve Labs is looked for before anything is sent again
(``task_may_exist``, the adoption check of ``dedupe``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from watcherd.cluster.claims import Claim
from watcherd.config import Config
from watcherd.state.schema import Changes, FileRecord
from watcherd.state.states import State
from watcherd.state.store import StaleState, Store


def adopt(store: Store, config: Config, claim: Claim, path: Path,
          queue: Callable[[int], None]) -> None:
    """The lease thread took ``claim`` over: hand its file to the upload workers, which
    claim it (ours now) and continue from it. Rows a thread works on are left to it."""
    folder = config.folder_for(path)
    if folder is None:
        return
    detail = f"claim taken over from host {claim.previous} (phase {claim.phase})"
    record = store.active_by_path(str(path))
    try:
        if record is None:
            file_id = store.insert(path=str(path), folder=str(folder.path),
                                   index_id=claim.index_id, state=State.QUEUED,
                                   size=claim.size, mtime_ns=claim.mtime_ns, detail=detail)
        elif record.state == State.SETTLING:
            file_id = store.transition(record.id, State.QUEUED, detail, expect=(State.SETTLING,),
                                       size=claim.size, mtime_ns=claim.mtime_ns, sha256=None,
                                       error_code=None, reason=None).id
        elif record.state == State.QUEUED:
            file_id = record.id
        else:
            return
    except StaleState:
        return  # the settler released it meanwhile: a worker has it
    queue(file_id)


def continue_from(store: Store, record: FileRecord, claim: Claim) -> str | None:
    """Give ``record`` what ``claim`` knows; the state it moved to, or None when the
    file is uploaded as usual (perhaps after looking for an earlier attempt's task)."""
    who = f"host {claim.previous}" if claim.previous else "an earlier run"
    remote: Changes = {"sha256": claim.sha256, "index_id": claim.index_id}
    if claim.upload_method is not None:  # the path it took: how its job is followed
        remote["upload_method"] = claim.upload_method
    if claim.upload_id is not None:  # the multipart session, resumed by that path
        remote["upload_id"] = claim.upload_id
        remote["asset_id"] = claim.asset_id
        remote["indexed_asset_id"] = claim.indexed_asset_id
    if claim.dest_path is not None:  # relative to the drop folder, as this host mounts it
        remote["dest_path"] = os.path.normpath(os.path.join(record.folder, claim.dest_path))
    if claim.task_id is not None:
        remote["task_id"], remote["video_id"] = claim.task_id, claim.video_id
        remote["uploaded_at"], remote["task_may_exist"] = store.clock(), 0
        store.transition(record.id, State.INDEXING,
                         f"continuing the task {claim.task_id} of {who}", **remote)
        return State.INDEXING
    if claim.phase == "indexing" and claim.asset_id is not None:
        # Multipart, uploaded: the indexing step looks for an indexed asset of this asset
        # before it asks for one (``indexing``: task_may_exist).
        remote["task_may_exist"] = 1
        store.transition(record.id, State.INDEXING,
                         f"continuing asset {claim.asset_id} of {who}", **remote)
        return State.INDEXING
    if claim.outcome is not None:
        remote["outcome"], remote["reason"] = claim.outcome, claim.reason
        remote["error_code"], remote["rule"] = claim.error_code, claim.rule
        store.transition(record.id, State.FINALIZING,
                         f"finishing what {who} decided: {claim.outcome}", **remote)
        return State.FINALIZING
    if claim.phase == "uploading":
        remote["task_may_exist"] = 1
        remote["upload_started_at"] = claim.upload_started_at or 0.0
        store.transition(record.id, State.QUEUED,
                         f"{who} may have sent it to Twelve Labs: looked for before any upload",
                         **remote)
    return None
