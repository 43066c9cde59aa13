"""What the upload worker does to a queued file before any upload: check it is still the
file that settled, validate it with its folder's profile (metadata first), hash it, and
send it to the folder's index of the moment (``retarget``, after a reload).

Each step writes its answer to the file's row; a rejection raises ``MediaRejected`` and
a file that changed raises ``FileChanged`` (the worker decides the file's fate).
"""

from __future__ import annotations

import logging
import os
import threading

from watcherd.config import FolderConfig
from watcherd.errors import FileChanged
from watcherd.ingest.dedupe import sha256_file
from watcherd.intake.metadata import gather
from watcherd.media.validate import check_for_folder, raise_if_rejected
from watcherd.state.states import State
from watcherd.state.store import FileRecord, Store
from watcherd.threads import beat

logger = logging.getLogger(__name__)


def ensure_unchanged(record: FileRecord) -> None:
    st = os.stat(record.path)  # FileNotFoundError → vanished
    if (st.st_size, st.st_mtime_ns) != (record.size, record.mtime_ns):
        raise FileChanged(f"file changed since it settled ({record.size} → {st.st_size} bytes)")


def changed(record: FileRecord) -> bool:
    try:
        st = os.stat(record.path)
    except OSError:
        return True
    return (st.st_size, st.st_mtime_ns) != (record.size, record.mtime_ns)


def validate(store: Store, record: FileRecord, folder: FolderConfig) -> FileRecord:
    ensure_unchanged(record)
    record = store.transition(record.id, State.VALIDATING, expect=(State.QUEUED,))
    # Metadata first: a metadata file that cannot be sent fails the file as surely
    # as a bad frame, and costs no decoding.
    store.update(record.id, metadata_json=gather(record.path, folder).stored())
    report = check_for_folder(record.path, folder)
    if report.facts:
        store.update(record.id, facts=report.facts.as_dict())
    if not report.accepted:
        # An unreadable file may simply still be written by a slow writer.
        ensure_unchanged(record)
    raise_if_rejected(report)
    return record


def hash_contents(store: Store, record: FileRecord, abort: threading.Event) -> FileRecord:
    def each_block() -> None:
        beat()
        if abort.is_set():
            raise FileChanged("hashing interrupted by shutdown")

    sha256 = sha256_file(record.path, each_block)
    ensure_unchanged(record)
    store.update(record.id, sha256=sha256)
    return store.get(record.id)


def hash_for_sidecar(store: Store, record: FileRecord, abort: threading.Event) -> None:
    """Rejected files get a sha256 too, so operators can match them up."""
    try:
        hash_contents(store, store.get(record.id), abort)
    except (OSError, FileChanged) as exc:
        logger.debug("%s: no sha256 for the sidecar: %s", record.path, exc)


def retarget(store: Store, record: FileRecord, folder: FolderConfig) -> FileRecord:
    """A reload changed the folder's index: a file not sent yet goes to the new one.

    Not while an earlier attempt may have created a task: that one is
    looked for in the index it was sent to, and the next intent retargets.
    """
    if record.index_id == folder.index_id or record.task_may_exist:
        return record
    detail = (f"the folder's index changed from {record.index_id} to {folder.index_id} "
              "(reload); it goes to the new index")
    logger.info("%s: %s", record.path, detail)
    return store.transition(record.id, record.state, detail, index_id=folder.index_id)
