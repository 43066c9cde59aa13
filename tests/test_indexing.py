"""The multipart path after the upload: asset -> indexed asset -> ready, exactly once.

A real asset is uploaded to the simulator with ``AssetsApi``, and an ``indexing`` row is
written by hand as the upload stage leaves it (upload_method "multipart", asset_id set,
no task or indexed asset). The poller then runs turn by turn with injected clocks.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import FakeClock
from watcherd.config import parse_config
from watcherd.ingest.gate import UploadGate
from watcherd.ingest.indexpause import IndexPauses
from watcherd.ingest.poller import Poller
from watcherd.ingest.usermetadata import user_metadata_for
from watcherd.simulator import FakeTwelveLabs
from watcherd.state.states import State
from watcherd.state.store import FileRecord, Store
from watcherd.twelvelabs.assets import AssetsApi, CompletedChunk
from watcherd.twelvelabs.client import TwelveLabsClient

pytestmark = pytest.mark.timeout(60)

CHUNK = 64 << 10
INDEXING_PATH = "/indexes/idx_test/indexed-assets"


@dataclass
class Rig:
    fake: FakeTwelveLabs
    assets: AssetsApi
    store: Store
    clock: FakeClock
    gate: UploadGate
    finalized: list[int]
    tmp_path: Any

    def uploaded(self, name: str = "clip.mp4", content: bytes = b"x" * (CHUNK + 5),
                 index_id: str = "idx_test") -> FileRecord:
        """An asset uploaded whole, and its row as the upload stage hands it over."""
        path = self.tmp_path / name
        path.write_bytes(content)
        session = self.assets.create_upload(name, len(content))
        chunks = []
        for url in session.upload_urls:
            offset, length = session.chunk_range(url.chunk_index, len(content))
            etag = self.assets.put_chunk(url.url, path, offset, length, {})
            chunks.append(CompletedChunk(url.chunk_index, etag, length))
        self.assets.report_chunks(session.upload_id, chunks)
        return self.store.add(path=str(path), folder=str(self.tmp_path), index_id=index_id,
                              state=State.INDEXING, size=len(content), sha256="ab" * 32,
                              upload_method="multipart", asset_id=session.asset_id,
                              uploaded_at=self.store.clock(), upload_started_at=0.0)

    def poller(self, **options: Any) -> Poller:
        return Poller(store=self.store, api=self.assets.client, gate=self.gate,
                      finalize=self.finalized.append, interval=1.0, rng=lambda: 0.5,
                      clock=self.clock, assets=options.pop("assets", self.assets), **options)

    def turns(self, poller: Poller, file_id: int, limit: int = 200) -> FileRecord:
        """Poll turn after turn (past any backoff on the clocks) until the file's row is
        finalizing; returns it."""
        for _ in range(limit):
            poller.poll_due()
            record = self.store.get(file_id)
            if record.state == State.FINALIZING:
                return record
            self.clock.now += 120
            self.fake.wait_for(lambda: False, timeout=0.02)
        raise AssertionError(f"file {file_id} never finished")

    def indexed_in(self, index_id: str = "idx_test") -> list[str]:
        return [i._id for i in self.fake.indexed_assets.values() if i.index_id == index_id]


@pytest.fixture
def rig(tmp_path) -> Iterator[Rig]:
    with FakeTwelveLabs(indexes=("idx_test", "idx_other"), store_dir=tmp_path / "blobs") as fake:
        fake.multipart_chunk_size = CHUNK
        fake.asset_ready_after = 0.0
        fake.indexed_progression = (("pending", 0.0), ("indexing", 0.02), ("ready", 0.05))
        client = TwelveLabsClient(fake.base_url, lambda: fake.api_key, io_timeout=5.0)
        assets = AssetsApi(client)
        store = Store(tmp_path / "state.db").open()
        clock = FakeClock(1000.0)
        try:
            yield Rig(fake, assets, store, clock, UploadGate(clock=clock), [], tmp_path)
        finally:
            store.close()
            assets.close()
            client.close()
    assert fake.errors == [], "the fake itself crashed:\n" + "\n".join(fake.errors)


def test_an_asset_processing_then_ready_is_indexed_once_and_followed_to_ready(rig):
    rig.fake.asset_ready_after = 3600.0  # processing for now
    record = rig.uploaded()
    poller = rig.poller()
    poller.poll_due()
    waiting = rig.store.get(record.id)
    assert (waiting.state, waiting.remote_status, waiting.indexed_asset_id) == \
        (State.INDEXING, "processing", None)
    assert rig.fake.count("POST", INDEXING_PATH) == 0  # never indexed before ready
    rig.fake.asset_ready_after = 0.0
    rig.clock.now += 10
    poller.poll_due()
    indexed = rig.store.get(record.id)
    (made,) = rig.indexed_in()
    assert (indexed.indexed_asset_id, indexed.task_id, indexed.video_id) == (made, made, made)
    assert indexed.task_may_exist == 0 and indexed.state == State.INDEXING
    assert rig.fake.indexed_assets[made].user_metadata == user_metadata_for(record)
    finished = rig.turns(poller, record.id)
    assert (finished.outcome, finished.reason, finished.task()["_id"]) == ("ready", None, made)
    assert rig.fake.count("POST", INDEXING_PATH) == 1 and rig.fake.count("POST", "/tasks") == 0


def test_a_failed_asset_fails_the_file_with_the_reason_and_is_never_indexed(rig):
    rig.fake.fail_assets(["broken.mp4"], "The file is not a video.")
    record = rig.uploaded("broken.mp4")
    failed = rig.turns(rig.poller(), record.id)
    assert (failed.outcome, failed.error_code) == ("failed", "asset_failed")
    assert failed.reason == (f"Twelve Labs could not process asset {record.asset_id}: "
                             "The file is not a video.")
    assert failed.task()["status"] == "failed"  # the asset as last seen, for the sidecar
    assert rig.fake.count("POST", INDEXING_PATH) == 0 and rig.indexed_in() == []


def test_a_lost_indexing_answer_is_adopted_from_the_asset_list_not_sent_again(rig):
    record = rig.uploaded()
    rig.fake.inject("POST", INDEXING_PATH, action="create_then_reset")
    poller = rig.poller()
    poller.poll_due()
    lost = rig.store.get(record.id)
    (made,) = rig.indexed_in()  # the simulator made it; the answer never came
    assert (lost.task_may_exist, lost.indexed_asset_id, lost.task_id) == (1, None, None)
    finished = rig.turns(poller, record.id)
    assert (finished.outcome, finished.indexed_asset_id, finished.task_id) == \
        ("ready", made, made)
    assert rig.fake.count("POST", INDEXING_PATH) == 1 and rig.indexed_in() == [made]
    assert rig.fake.count("GET", f"/assets/{record.asset_id}/indexed-assets") == 1
    assert any("adopted indexed asset" in (h["detail"] or "")
               for h in rig.store.history(record.id))


@pytest.mark.parametrize("created", [True, False], ids=["answer-lost", "never-sent"])
def test_a_restart_between_intent_and_answer_looks_before_indexing(rig, created):
    """The daemon died after storing the intent: the POST went out (or did not)."""
    record = rig.uploaded()
    rig.store.update(record.id, task_may_exist=1)
    if created:
        rig.assets.create_indexed_asset("idx_test", record.asset_id or "")
        rig.assets.create_indexed_asset("idx_other", record.asset_id or "")  # not ours
    before = rig.fake.count("POST", INDEXING_PATH)
    finished = rig.turns(rig.poller(), record.id)  # a fresh poller: nothing kept in memory
    (made,) = rig.indexed_in()
    assert finished.outcome == "ready" and finished.indexed_asset_id == made
    assert rig.fake.count("POST", INDEXING_PATH) - before == (0 if created else 1)


class IndexUnsaid:
    """``AssetsApi`` whose asset list does not say which index (a shape the note leaves
    open): the indexer must ask the index itself."""

    def __init__(self, assets: AssetsApi) -> None:
        self.assets = assets

    def __getattr__(self, name: str) -> Any:
        return getattr(self.assets, name)

    def list_indexed_assets_by_asset(self, asset_id: str, *,
                                     max_pages: int = 10) -> list[dict[str, str]]:
        listed = self.assets.list_indexed_assets_by_asset(asset_id, max_pages=max_pages)
        return [{"_id": item["_id"], "index_id": ""} for item in listed]


def test_an_asset_list_without_the_index_is_checked_against_the_index(rig):
    record = rig.uploaded()
    rig.store.update(record.id, task_may_exist=1)
    other = rig.assets.create_indexed_asset("idx_other", record.asset_id or "")["_id"]
    ours = rig.assets.create_indexed_asset("idx_test", record.asset_id or "")["_id"]
    finished = rig.turns(rig.poller(assets=IndexUnsaid(rig.assets)), record.id)
    assert finished.indexed_asset_id == ours != other
    assert rig.fake.count("POST", INDEXING_PATH) == 1  # only the test's own


def test_a_transient_error_backs_off_and_holds_the_indexing_call_at_the_gate(rig):
    record = rig.uploaded()
    rig.fake.inject("POST", INDEXING_PATH, status=503)
    poller = rig.poller()
    poller.poll_due()
    assert rig.store.get(record.id).task_may_exist == 1
    assert rig.gate.describe() is not None  # the shared backoff: uploads wait too
    poller.poll_due()  # not due yet: nothing asked
    assert rig.fake.count("GET", f"/assets/{record.asset_id}/indexed-assets") == 0
    finished = rig.turns(poller, record.id)
    assert finished.outcome == "ready" and len(rig.indexed_in()) == 1


@pytest.mark.parametrize("stage", ["asset", "indexing call", "indexed asset"])
def test_task_timeout_applies_to_the_asset_and_to_its_indexed_asset(rig, stage):
    if stage == "asset":
        rig.fake.asset_ready_after = 1e6
    elif stage == "indexing call":
        rig.fake.inject("POST", INDEXING_PATH, status=503, times=100)
    else:
        rig.fake.indexed_progression = (("pending", 0.0), ("indexing", 0.0), ("ready", 1e6))
    record = rig.uploaded()
    poller = rig.poller(task_timeout=7200)
    poller.poll_due()
    rig.fake.wait_for(lambda: False, timeout=0.05)
    rig.clock.now += 60
    poller.poll_due()
    assert rig.store.get(record.id).state == State.INDEXING
    rig.clock.now += 7200
    poller.poll_due()
    failed = rig.store.get(record.id)
    assert (failed.state, failed.error_code) == (State.FINALIZING, "task_timeout")
    expected = {"asset": f"asset {record.asset_id} still processing",
                "indexing call": f"asset {record.asset_id} ready but not indexed",
                "indexed asset": f"indexed asset {failed.indexed_asset_id} still indexing"
                }[stage]
    assert failed.reason.startswith(expected)


def test_indexed_assets_of_one_index_are_polled_with_one_list_request(rig):
    rig.fake.indexed_progression = (("pending", 0.0), ("indexing", 0.0), ("ready", 1e6))
    records = [rig.uploaded(f"clip{n}.mp4", bytes([n]) * 100) for n in range(3)]
    poller = rig.poller(batch=True)
    poller.poll_due()  # each asset indexed
    assert all(rig.store.get(r.id).indexed_asset_id for r in records)
    rig.clock.now += 10
    gets_before = rig.fake.count("GET", INDEXING_PATH + "/")
    lists_before = rig.fake.count("GET", INDEXING_PATH) - gets_before
    poller.poll_due()
    gets = rig.fake.count("GET", INDEXING_PATH + "/")
    assert rig.fake.count("GET", INDEXING_PATH) - gets - lists_before == 1
    assert gets == gets_before
    assert {rig.store.get(r.id).remote_status for r in records} == {"indexing"}


def test_a_tasks_row_and_a_multipart_row_are_each_followed_their_own_way(rig):
    rig.fake.set_progression((("pending", 0.0), ("ready", 0.05)))
    old = rig.tmp_path / "old.mp4"
    old.write_bytes(b"legacy bytes")
    task = rig.assets.client.create_task(old, index_id="idx_test")
    legacy = rig.store.add(path=str(old), folder=str(rig.tmp_path), index_id="idx_test",
                           state=State.INDEXING, task_id=task["_id"],
                           video_id=task["video_id"])
    record = rig.uploaded()
    poller = rig.poller()
    rig.turns(poller, record.id)
    rig.turns(poller, legacy.id)
    assert rig.store.get(legacy.id).outcome == rig.store.get(record.id).outcome == "ready"
    assert rig.store.get(legacy.id).video_id == task["video_id"]
    assert rig.fake.count("GET", f"/tasks/{task['_id']}") >= 1
    assert rig.fake.count("GET", f"/tasks/{rig.store.get(record.id).task_id}") == 0


def test_indexed_assets_of_a_deleted_index_wait_instead_of_failing(rig):
    record = rig.uploaded()
    poller = rig.poller(index_pauses=IndexPauses(lambda: parse_config(
        {"folders": [{"path": str(rig.tmp_path), "index_id": "idx_test"}]},
        base_dir=rig.tmp_path, env={})))
    poller.poll_due()
    assert rig.store.get(record.id).indexed_asset_id
    rig.fake.indexes.remove("idx_test")
    rig.clock.now += 10
    poller.poll_due()
    assert poller.index_pauses is not None and poller.index_pauses.why("idx_test")
    assert rig.store.get(record.id).state == State.INDEXING and rig.finalized == []


def test_a_copy_that_joins_a_multipart_file_follows_the_same_indexed_asset(rig):
    from watcherd.ingest.dedupe import join_holder

    holder = rig.uploaded()
    poller = rig.poller()
    poller.poll_due()  # the holder's asset is indexed
    copy = rig.store.add(path=str(rig.tmp_path / "copy.mp4"), folder=str(rig.tmp_path),
                         index_id="idx_test", state=State.QUEUED, sha256="ab" * 32)
    assert join_holder(rig.store, copy, rig.store.get(holder.id)) == State.INDEXING
    joined = rig.turns(poller, copy.id)
    held = rig.store.get(holder.id)
    assert (joined.outcome, joined.upload_method, joined.asset_id, joined.indexed_asset_id) \
        == ("ready", "multipart", held.asset_id, held.indexed_asset_id)
    assert rig.fake.count("GET", "/tasks") == 0 and len(rig.indexed_in()) == 1


def test_status_list_and_explain_show_the_upload_path_and_the_ids(rig):
    from watcherd.cli.explain import explain
    from watcherd.cli.listing import list_row
    from watcherd.cli.render import job_shown
    from watcherd.cli.status import build_status

    rig.fake.asset_ready_after = 3600.0
    record = rig.uploaded()
    rig.poller().poll_due()
    config = parse_config({"folders": [{"path": str(rig.tmp_path), "index_id": "idx_test"}]},
                          base_dir=rig.tmp_path, env={})
    ids = {"upload_method": "multipart", "asset_id": record.asset_id, "indexed_asset_id": None}
    row = list_row(rig.store.get(record.id))
    assert {k: row[k] for k in ids} == ids and job_shown(row) == f"asset {record.asset_id}"
    (active,) = build_status(config, rig.store)["active"]
    assert {k: active[k] for k in ids} == ids
    told = explain(config, rig.store, record.path)
    assert {k: told["record"][k] for k in ids} == ids
    assert f"as asset {record.asset_id} (multipart); the asset is processing" in \
        told["summary"]
