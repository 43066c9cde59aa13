"""One upload, many indexes (``ingest.reuse``): content already uploaded as an asset is
indexed from it into another index, and content being uploaded for another index is
waited for, never sent twice; the claim at upload intent closes the race between two
workers. The real daemon is in test_method_e2e."""

from __future__ import annotations

import queue
import shutil

import pytest

from tests.test_pipeline import ScriptedApi
from watcherd.config import parse_config
from watcherd.ingest.gate import UploadGate
from watcherd.ingest.reuse import reuse_asset
from watcherd.ingest.upload import UploadWorker
from watcherd.state.states import State
from watcherd.state.store import AssetInFlight, Store

SHA = "ab" * 32


@pytest.fixture
def store(tmp_path):
    opened = Store(tmp_path / "state.db").open()
    yield opened
    opened.close()


def row(store, name, index_id, state, **fields):
    return store.add(path=f"/drop/{index_id}/{name}", folder=f"/drop/{index_id}",
                     index_id=index_id, state=state, sha256=SHA, size=10, **fields)


def test_content_indexed_from_an_asset_elsewhere_goes_straight_to_indexing(store):
    source = row(store, "a.mp4", "idx_a", State.DONE, upload_method="multipart",
                 asset_id="asset1", indexed_asset_id="ia1", task_id="ia1", outcome="ready")
    new = row(store, "b.mp4", "idx_b", State.QUEUED)
    found = reuse_asset(store, new, "auto")
    assert found.indexed and found.source is not None and found.source.id == source.id
    new = store.get(new.id)
    assert (new.state, new.asset_id, new.upload_method, new.index_id) == \
        (State.INDEXING, "asset1", "multipart", "idx_b")
    assert new.task_id is None and new.indexed_asset_id is None  # the indexing step's to set


@pytest.mark.parametrize("source_fields", [
    {"upload_method": "multipart", "asset_id": "asset1"},           # asset not indexed yet
    {"upload_method": "tasks", "task_id": "t1", "outcome": "ready"},  # no asset at all
])
def test_no_asset_that_was_ready_means_no_reuse(store, source_fields):
    row(store, "a.mp4", "idx_a", State.FAILED, **source_fields)
    new = row(store, "b.mp4", "idx_b", State.QUEUED)
    found = reuse_asset(store, new, "auto")
    assert not (found.indexed or found.waiting)
    assert store.get(new.id).state == State.QUEUED


def test_a_tasks_folder_sends_its_own_bytes(store):
    row(store, "a.mp4", "idx_a", State.DONE, upload_method="multipart", asset_id="asset1",
        indexed_asset_id="ia1")
    new = row(store, "b.mp4", "idx_b", State.QUEUED)
    assert not reuse_asset(store, new, "tasks").indexed


@pytest.mark.parametrize("state, fields", [
    (State.UPLOADING, {}),
    (State.INDEXING, {"asset_id": "asset1"}),                      # asset still processing
    (State.QUEUED, {"upload_id": "up1", "asset_id": "asset1"}),    # waiting to resume
])
def test_content_being_uploaded_for_another_index_is_waited_for(store, state, fields):
    flying = row(store, "a.mp4", "idx_a", state, upload_method="multipart", **fields)
    new = row(store, "b.mp4", "idx_b", State.QUEUED)
    found = reuse_asset(store, new, "multipart")
    assert found.waiting and found.source is not None and found.source.id == flying.id


def test_the_claim_at_upload_intent_refuses_a_second_asset_upload(store):
    row(store, "a.mp4", "idx_a", State.UPLOADING, upload_method="multipart")
    new = row(store, "b.mp4", "idx_b", State.QUEUED)
    with pytest.raises(AssetInFlight, match="being uploaded for index idx_a"):
        store.transition(new.id, State.UPLOADING, claim_content=True,
                         upload_method="multipart", index_id="idx_b")
    assert store.get(new.id).state == State.QUEUED
    # The legacy path makes no asset to share: it claims only within its index.
    store.transition(new.id, State.UPLOADING, claim_content=True, upload_method="tasks",
                     index_id="idx_b")


def test_the_worker_indexes_from_the_asset_without_any_request(tmp_path, valid_clip):
    inbox = tmp_path / "b"
    inbox.mkdir()
    config = parse_config({"folders": [{"path": str(inbox), "index_id": "idx_b"}]},
                          base_dir=tmp_path, env={})
    store = Store(tmp_path / "state.db").open()
    path = inbox / "copy.mp4"
    shutil.copy(valid_clip, path)
    st = path.stat()
    from watcherd.ingest.dedupe import sha256_file

    sha = sha256_file(str(path))
    store.add(path="/elsewhere/a.mp4", folder="/elsewhere", index_id="idx_a", state=State.DONE,
              sha256=sha, upload_method="multipart", asset_id="asset9", indexed_asset_id="ia9",
              outcome="ready")
    record = store.add(path=str(path), folder=str(inbox), index_id="idx_b", state=State.QUEUED,
                       size=st.st_size, mtime_ns=st.st_mtime_ns)
    api = ScriptedApi()
    UploadWorker("upload-1", config=config, store=store, api=api, gate=UploadGate(),
                 work=queue.Queue(), finalize=pytest.fail, settle_again=pytest.fail
                 ).process(record.id)
    record = store.get(record.id)
    assert (record.state, record.asset_id) == (State.INDEXING, "asset9") and api.calls == []
    store.close()
