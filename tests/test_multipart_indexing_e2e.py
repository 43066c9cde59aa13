"""A dropped file from the inbox to done/ (or failed/) through the whole multipart path:
session and chunks, the asset, its indexed asset, the sidecar. The real daemon against
the strict simulator; chunks are small, so each file is a few chunks."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import TEST_KEY, DaemonRunner
from watcherd.simulator import FakeTwelveLabs

pytestmark = pytest.mark.timeout(90)

CHUNK = 64 << 10
INDEXING_PATH = "/indexes/idx_test/indexed-assets"


@pytest.fixture
def fake_api(tmp_path) -> Iterator[FakeTwelveLabs]:
    with FakeTwelveLabs(api_key=TEST_KEY, store_dir=tmp_path / "fake-store") as fake:
        fake.multipart_chunk_size = CHUNK
        fake.asset_ready_after = 0.3
        fake.indexed_progression = (("pending", 0.0), ("indexing", 0.2), ("ready", 0.5))
        yield fake
    assert fake.errors == [], "the fake itself crashed:\n" + "\n".join(fake.errors)


@pytest.fixture
def multipart(daemon: DaemonRunner) -> DaemonRunner:
    daemon.settings.update(upload_method="multipart")
    return daemon


def drop(daemon: DaemonRunner, source: Path, name: str) -> Path:
    staged = daemon.root / name
    staged.write_bytes(source.read_bytes())
    return staged.rename(daemon.inbox / name)


def test_a_dropped_file_is_uploaded_indexed_once_and_done(multipart, fake_api, valid_clip):
    multipart.start()
    drop(multipart, valid_clip, "clip.mp4")
    sidecar = multipart.sidecar(multipart.wait_done("clip.mp4", timeout=45))
    (asset,) = fake_api.assets.values()
    (made,) = fake_api.indexed_assets.values()
    assert (sidecar["status"], sidecar["upload_method"], sidecar["asset_id"]) == \
        ("ready", "multipart", asset._id)
    assert sidecar["indexed_asset_id"] == sidecar["task_id"] == sidecar["video_id"] == made._id
    assert made.asset_id == asset._id and made.index_id == sidecar["index_id"] == "idx_test"
    assert made.user_metadata == sidecar["user_metadata"]
    assert {k: made.user_metadata[k] for k in ("sha256", "source_path")} == \
        {"sha256": sidecar["sha256"], "source_path": sidecar["source_path"]}
    assert asset.sha256 == sidecar["sha256"] == hashlib.sha256(
        valid_clip.read_bytes()).hexdigest()
    assert fake_api.count("POST", "/tasks") == 0 and fake_api.count("POST", INDEXING_PATH) == 1


def test_a_lost_answer_on_indexing_create_still_indexes_once(multipart, fake_api,
                                                             valid_clip):
    fake_api.inject("POST", INDEXING_PATH, action="create_then_reset")
    multipart.start()
    drop(multipart, valid_clip, "lost.mp4")
    sidecar = multipart.sidecar(multipart.wait_done("lost.mp4", timeout=45))
    (made,) = fake_api.indexed_assets.values()
    assert sidecar["status"] == "ready" and sidecar["indexed_asset_id"] == made._id
    assert fake_api.count("POST", INDEXING_PATH) == 1  # the lost one; adopted, not resent
    assert fake_api.count("GET", f"/assets/{made.asset_id}/indexed-assets") >= 1
    assert "adopted indexed asset" in multipart.log()


def test_a_failed_asset_sends_the_file_to_failed_with_the_reason(multipart, fake_api,
                                                                 valid_clip):
    fake_api.fail_assets(["bad.mp4"], "The file could not be processed.")
    multipart.start()
    drop(multipart, valid_clip, "bad.mp4")
    sidecar = multipart.sidecar(multipart.wait_done("bad.mp4", where="failed", timeout=45))
    (asset,) = fake_api.assets.values()
    assert (sidecar["status"], sidecar["error_code"], sidecar["upload_method"],
            sidecar["asset_id"], sidecar["indexed_asset_id"]) == \
        ("failed", "asset_failed", "multipart", asset._id, None)
    assert sidecar["reason"] == (f"Twelve Labs could not process asset {asset._id}: "
                                 "The file could not be processed.")
    assert fake_api.indexed_assets == {} and fake_api.count("POST", INDEXING_PATH) == 0
