"""An upload worker's steps that exist only with several hosts (``coordination:``).

Before a file is validated it is claimed (``claimed``): a file another host
holds goes back to the settler, held there until it goes; a file whose claim
knows more (a takeover, or our own claim after a restart) continues from it
(``takeover.continue_from``). Right before the POST the claim is fenced and
the cluster-wide dedupe asked (``settled_without_upload``). Every answer is
written into the claim (``claim_task``). A lost claim stands the file down
here; PostgreSQL away sends the file to the back of the queue.
"""

from __future__ import annotations

from collections.abc import Callable

from watcherd.cluster.claims import Claim
from watcherd.cluster.coordinator import Coordinator
from watcherd.config import FolderConfig
from watcherd.errors import ClaimLost, CoordinationUnavailable
from watcherd.ingest.takeover import continue_from
from watcherd.state.schema import FileRecord
from watcherd.state.states import CLAIM_LOST, CLAIMED_ELSEWHERE, State
from watcherd.state.store import Store

# A file waiting for the same content on another host looks again this often.
HOLDER_RECHECK_SECONDS = 1.0
# A file waiting for PostgreSQL goes round the queue this often.
OUTAGE_RECHECK_SECONDS = 1.0


class ClusterSteps:
    def __init__(self, coordinator: Coordinator, store: Store, *,
                 finalize: Callable[[int], None], settle_again: Callable[[str], None],
                 hold_elsewhere: Callable[[str], None],
                 requeue: Callable[[int, float], None]) -> None:
        self.coordinator = coordinator
        self.store = store
        self.finalize = finalize
        self.settle_again = settle_again
        self.hold_elsewhere = hold_elsewhere
        self.requeue = requeue

    def claimed(self, record: FileRecord) -> FileRecord | None:
        """Claim the file: its row to go on with, or None when another host has it or
        it continues elsewhere in this daemon (indexing, finalizing)."""
        verdict = self.coordinator.claim(record)
        if verdict.kind == "finished":  # its owner is moving it; if not, a new drop
            self.store.transition(record.id, State.SETTLING,
                                  f"just finished by host {verdict.claim.owner}")
            self.settle_again(record.path)
            return None
        if verdict.kind == "elsewhere":
            detail = f"claimed by host {verdict.claim.owner} ({verdict.claim.phase}); left to it"
            self.store.transition(record.id, State.SETTLING, detail,
                                  error_code=CLAIMED_ELSEWHERE, reason=detail)
            self.hold_elsewhere(record.path)
            return None
        if verdict.kind == "new":
            return record
        moved = continue_from(self.store, record, verdict.claim)
        if moved == State.FINALIZING:
            self.finalize(record.id)
        return None if moved is not None else self.store.get(record.id)

    def settled_without_upload(self, record: FileRecord, folder: FolderConfig,
                               record_task: Callable[[FileRecord, str, str | None, str], None]
                               ) -> bool:
        """The fence before the POST, with the cluster-wide dedupe: True when no upload
        is to be made (joined another host's content, adopted a handed-over task)."""
        assert record.sha256 is not None  # hashed before any upload
        how, claim = self.coordinator.begin_upload(
            record, sha256=record.sha256, index_id=folder.index_id, dedupe=folder.dedupe,
            started_at=self.store.clock())
        if how == "upload":
            return False
        if how == "adopt":
            record_task(record, claim.task_id or "", claim.video_id,
                        "adopted the task a stale owner's attempt created")
            return True
        holder = self.coordinator.content_holder(record, record.sha256, folder.index_id)
        if holder is None or holder.task_id is None:
            self._wait_for_holder(record, holder)
            return True
        detail = (f"duplicate: same content as {holder.relpath.decode(errors='replace')} "
                  f"(host {holder.owner}, task {holder.task_id}); not uploaded again")
        self.store.transition(record.id, State.INDEXING, detail, task_id=holder.task_id,
                              video_id=holder.video_id, index_id=folder.index_id,
                              uploaded_at=self.store.clock(), task_may_exist=0)
        self.claim_task(record, holder.task_id, holder.video_id)
        return True

    def _wait_for_holder(self, record: FileRecord, holder: Claim | None) -> None:
        if holder is not None and record.state != State.QUEUED:
            self.store.transition(record.id, State.QUEUED,
                                  f"waiting for host {holder.owner}: same content, upload in "
                                  "progress")
        self.requeue(record.id, HOLDER_RECHECK_SECONDS)

    def claim_task(self, record: FileRecord, task_id: str, video_id: str | None) -> None:
        """Write the task (on the multipart path: the indexed asset) into the claim, so a
        host taking over follows it."""
        try:
            self.coordinator.record(record, "recording the task", phase="indexing",
                                    task_id=task_id, video_id=video_id,
                                    **remote_ids(self.store.get(record.id)))
        except CoordinationUnavailable:
            pass  # written with the move's target; until then a takeover looks it up
        except ClaimLost as exc:
            try:
                self.coordinator.hand_over_task(record, task_id, video_id)
            except CoordinationUnavailable:
                pass
            self.stand_down(self.store.get(record.id), exc)

    def claim_uploaded(self, row: FileRecord) -> None:
        """Multipart: the asset is uploaded (indexing comes next, on the poller's thread):
        a host taking over indexes it, after looking whether that already happened."""
        try:
            self.coordinator.record(row, "recording the asset", phase="indexing",
                                    task_id=row.task_id, video_id=row.video_id,
                                    **remote_ids(row))
        except CoordinationUnavailable:
            pass  # written with the move's target; until then a takeover resumes the session
        except ClaimLost as exc:
            self.stand_down(row, exc)

    def fence_request(self, file_id: int) -> None:
        """Before each multipart request (create, chunk report, status, indexing): the
        claim is still ours, and it learns the session and asset ids got so far."""
        row = self.store.get(file_id)
        self.coordinator.record(row, "a multipart request", **remote_ids(row))

    def stand_down(self, record: FileRecord, exc: ClaimLost) -> None:
        stand_down(self.coordinator, self.store, record, exc)

    def close_claim(self, record: FileRecord, why: str) -> None:
        """The file is gone before its upload: its claim is closed (reopened if it returns)."""
        try:
            self.coordinator.finish(record, "failed", reason=why)
        except (ClaimLost, CoordinationUnavailable):
            pass  # someone else's now, or its lease runs out and a host finds no file

    def drop_claim(self, record: FileRecord, *, changed: bool) -> None:
        """The file changed: the claim of its old identity (size, mtime) is void. An upload
        aborted for another reason (shutdown, a lapsed lease) keeps it."""
        if not changed:
            return
        try:
            self.coordinator.drop(record)
        except (ClaimLost, CoordinationUnavailable):
            pass  # someone else's now, or its lease runs out

    def wait_for_coordination(self, file_id: int) -> None:
        """PostgreSQL is away: the file waits in the queue (the coordinator said why)."""
        record = self.store.get(file_id)
        if record.state in (State.VALIDATING, State.UPLOADING):
            self.store.transition(file_id, State.QUEUED, "waiting for PostgreSQL")
        self.requeue(file_id, OUTAGE_RECHECK_SECONDS)

    def lease_lapsed(self) -> bool:
        return self.coordinator.lease_lapsed()


def remote_ids(row: FileRecord) -> dict[str, str]:
    """The multipart path's ids a host taking over resumes from, as far as they exist."""
    found = {"upload_method": row.upload_method, "upload_id": row.upload_id,
             "asset_id": row.asset_id, "indexed_asset_id": row.indexed_asset_id}
    return {key: value for key, value in found.items() if value is not None}


def stand_down(coordinator: Coordinator, store: Store, record: FileRecord,
               exc: ClaimLost) -> None:
    """Another host holds the file now: this row ends here, the file is left to it."""
    detail = coordinator.stand_down(record, exc)
    store.transition(record.id, State.VANISHED, detail, error_code=CLAIM_LOST,
                     reason=detail, finished_at=store.clock())


class IndexingFence:
    """The poller's indexing step (multipart) under claims: the fence before
    ``POST /indexes/{id}/indexed-assets``, and the indexed asset written into the claim."""

    def __init__(self, coordinator: Coordinator, store: Store) -> None:
        self.coordinator = coordinator
        self.store = store

    def before(self, record: FileRecord) -> None:
        self.coordinator.record(record, "the indexing request", **remote_ids(record))

    def after(self, file_id: int) -> None:
        row = self.store.get(file_id)
        try:
            self.coordinator.record(row, "recording the indexed asset", phase="indexing",
                                    task_id=row.task_id, video_id=row.video_id,
                                    **remote_ids(row))
        except (ClaimLost, CoordinationUnavailable):
            pass  # the move's fence finds out; its target write carries the ids too

    def stand_down(self, record: FileRecord, exc: ClaimLost) -> None:
        stand_down(self.coordinator, self.store, record, exc)
