"""The real daemon takes an uploaded asset to done/ (or failed/) through its indexed asset.

The asset is uploaded to the simulator with ``AssetsApi`` and the row written into the
daemon's database as the upload stage hands it over (``indexing``, upload_method
"multipart", asset_id set, nothing indexed yet); then the daemon starts.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import TEST_KEY, DaemonRunner
from watcherd.ingest.dedupe import sha256_file
from watcherd.state.states import State
from watcherd.state.store import Store
from watcherd.twelvelabs.assets import AssetsApi, CompletedChunk
from watcherd.twelvelabs.client import TwelveLabsClient

pytestmark = pytest.mark.timeout(90)

CHUNK = 64 << 10
INDEXING_PATH = "/indexes/idx_test/indexed-assets"


def handed_over(daemon: DaemonRunner, clip: Path, name: str) -> str:
    """Upload ``clip`` as ``name`` in the inbox through a multipart session, and write its
    row as the upload stage leaves it; returns the asset id."""
    fake = daemon.api
    fake.multipart_chunk_size = CHUNK
    fake.asset_ready_after = 0.3
    fake.indexed_progression = (("pending", 0.0), ("indexing", 0.2), ("ready", 0.5))
    path = daemon.inbox / name
    shutil.copyfile(clip, path)
    size = path.stat().st_size
    client = TwelveLabsClient(fake.base_url, lambda: TEST_KEY, io_timeout=5.0)
    assets = AssetsApi(client)
    try:
        session = assets.create_upload(name, size)
        urls = {u.chunk_index: u.url for u in session.upload_urls}
        for start in range(1, session.total_chunks + 1, 50):
            if start not in urls:
                urls.update({u.chunk_index: u.url for u in assets.request_urls(
                    session.upload_id, start, min(50, session.total_chunks - start + 1))})
        chunks = []
        for index in range(1, session.total_chunks + 1):
            offset, length = session.chunk_range(index, size)
            etag = assets.put_chunk(urls[index], path, offset, length, {})
            chunks.append(CompletedChunk(index, etag, length))
        assets.report_chunks(session.upload_id, chunks)
    finally:
        assets.close()
        client.close()
    db = Path(daemon.settings["state_db"])
    db.parent.mkdir(parents=True, exist_ok=True)
    store = Store(db).open()
    try:
        st = path.stat()
        store.add(path=str(path), folder=str(daemon.inbox), index_id="idx_test",
                  state=State.INDEXING, size=st.st_size, mtime_ns=st.st_mtime_ns,
                  sha256=sha256_file(str(path)), attempts=1, upload_method="multipart",
                  asset_id=session.asset_id, upload_started_at=store.clock(),
                  uploaded_at=store.clock(), detail="handed over by the test")
    finally:
        store.close()
    return session.asset_id


def test_a_lost_indexing_answer_still_ends_in_done_with_one_indexed_asset(daemon,
                                                                         valid_clip):
    asset_id = handed_over(daemon, valid_clip, "clip.mp4")
    daemon.api.inject("POST", INDEXING_PATH, action="create_then_reset")
    daemon.start()
    moved = daemon.wait_done("clip.mp4")
    sidecar = daemon.sidecar(moved)
    (made,) = [i for i in daemon.api.indexed_assets.values() if i.asset_id == asset_id]
    assert (sidecar["status"], sidecar["upload_method"], sidecar["asset_id"]) == \
        ("ready", "multipart", asset_id)
    assert sidecar["indexed_asset_id"] == sidecar["task_id"] == sidecar["video_id"] == made._id
    assert sidecar["task"]["status"] == "ready" and sidecar["error_code"] is None
    assert made.user_metadata is not None and made.user_metadata["sha256"] == sidecar["sha256"]
    assert daemon.api.count("POST", INDEXING_PATH) == 1  # the lost one, and no other
    assert daemon.api.count("GET", f"/assets/{asset_id}/indexed-assets") >= 1
    assert daemon.api.count("POST", "/tasks") == 0


def test_a_failed_asset_goes_to_failed_with_the_reason(daemon, valid_clip):
    daemon.api.fail_assets(["bad.mp4"], "The file could not be processed.")
    asset_id = handed_over(daemon, valid_clip, "bad.mp4")
    daemon.start()
    moved = daemon.wait_done("bad.mp4", where="failed")
    sidecar = daemon.sidecar(moved)
    assert (sidecar["status"], sidecar["error_code"], sidecar["asset_id"]) == \
        ("failed", "asset_failed", asset_id)
    assert "The file could not be processed." in sidecar["reason"]
    assert sidecar["indexed_asset_id"] is None and daemon.api.indexed_assets == {}
