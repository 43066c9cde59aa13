"""The multipart stage one step at a time: a real store, the in-process simulator, no daemon.

Each test sets up what a crash or a race would have left (rows, ledger, sessions on the
server) and runs the stage once: which session it resumes, adopts or creates, and what
it sends.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.test_multipart_e2e import StorageWatch, chunk_puts
from watcherd.config import parse_config
from watcherd.errors import FileChanged
from watcherd.ingest.gate import UploadGate
from watcherd.ingest.multipart import FileChecks, MultipartStage
from watcherd.ingest.progress import Progress
from watcherd.simulator import FakeTwelveLabs
from watcherd.state.chunks import ChunkLedger, SessionPrint
from watcherd.state.schema import FileRecord
from watcherd.state.states import State
from watcherd.state.store import Store
from watcherd.twelvelabs.assets import AssetsApi, CompletedChunk
from watcherd.twelvelabs.client import TwelveLabsClient

pytestmark = pytest.mark.timeout(60)

CHUNK = 64 << 10


class Rig:
    def __init__(self, root: Path, fake: FakeTwelveLabs) -> None:
        self.root, self.fake = root, fake
        self.inbox = root / "inbox"
        self.inbox.mkdir()
        self.config = parse_config({"upload_method": "multipart", "chunk_concurrency": 3,
                                    "folders": [{"path": str(self.inbox),
                                                 "index_id": "idx_test"}]},
                                   base_dir=root, env={})
        self.store = Store(root / "state.db").open()
        self.client = TwelveLabsClient(fake.base_url, lambda: fake.api_key, io_timeout=5.0)
        self.assets = AssetsApi(self.client)
        self.ledger = ChunkLedger(self.store)
        self.connections = threading.BoundedSemaphore(8)

    def queued(self, name: str, size: int, **fields: Any) -> FileRecord:
        path = self.inbox / name
        path.write_bytes(os.urandom(size))
        st = path.stat()
        return self.store.add(path=str(path), folder=str(self.inbox), index_id="idx_test",
                              state=State.QUEUED, size=size, mtime_ns=st.st_mtime_ns,
                              sha256=hashlib.sha256(path.read_bytes()).hexdigest(), **fields)

    def stage(self, connections: threading.Semaphore | None = None) -> MultipartStage:
        def changed(record: FileRecord) -> bool:
            st = os.stat(record.path)
            return (st.st_size, st.st_mtime_ns) != (record.size, record.mtime_ns)

        def ensure_unchanged(record: FileRecord) -> None:
            if changed(record):
                raise FileChanged("changed")

        return MultipartStage(store=self.store, assets=lambda: self.assets,
                              gate=UploadGate(rng=lambda: 0.0), progress=Progress(),
                              connections=connections or self.connections,
                              config=lambda: self.config,
                              checks=FileChecks(ensure_unchanged, changed),
                              stop=threading.Event(), abort=threading.Event())

    def run(self, record: FileRecord) -> FileRecord:
        self.stage().run(record, self.config.folders[0])
        return self.store.get(record.id)

    def session(self, size: int) -> Any:
        """A session on the server that this run never heard the answer of."""
        return self.assets.create_upload("x.mp4", size)

    def close(self) -> None:
        self.assets.close()
        self.client.close()
        self.store.close()


@pytest.fixture
def rig(tmp_path) -> Iterator[Rig]:
    with FakeTwelveLabs(store_dir=tmp_path / "fake-store") as fake:
        fake.multipart_chunk_size = CHUNK
        rig = Rig(tmp_path, fake)
        yield rig
        rig.close()
    assert fake.errors == []


def assembled(rig: Rig, record: FileRecord) -> str | None:
    return rig.fake.assets[record.asset_id or ""].sha256


def test_a_new_session_is_stored_with_the_answer_and_the_row_handed_to_indexing(rig):
    record = rig.run(rig.queued("a.mp4", 5 * CHUNK + 1))
    (session,) = rig.fake.uploads_by_id.values()
    assert (record.state, record.upload_method, record.upload_id, record.asset_id) == \
        (State.INDEXING, "multipart", session.upload_id, session.asset_id)
    assert (record.chunk_size, record.total_chunks, record.task_may_exist) == (CHUNK, 6, 0)
    assert record.session_expires_at == pytest.approx(session.expires_ms / 1000, abs=1)
    assert assembled(rig, record) == record.sha256
    assert rig.ledger.fingerprint(session.upload_id) is None  # forgotten at the hand-off
    history = [h["detail"] or "" for h in rig.store.history(record.id)]
    assert any(d.startswith(f"session {session.upload_id}: 6 chunk(s)") for d in history)


def test_a_resumed_session_reports_known_etags_and_sends_only_the_missing_chunks(rig):
    record = rig.queued("r.mp4", 8 * CHUNK)
    session = rig.session(8 * CHUNK)
    rig.ledger.open_session(record.id, State.QUEUED, "as a crash left it",
                            SessionPrint(session.upload_id, record.sha256 or "", 8 * CHUNK, {}),
                            upload_id=session.upload_id, asset_id=session.asset_id,
                            chunk_size=CHUNK, total_chunks=8, upload_method="multipart")
    for url in session.upload_urls[:3]:  # sent, ETag stored, never reported: then the crash
        offset, length = session.chunk_range(url.chunk_index, 8 * CHUNK)
        etag = rig.assets.put_chunk(url.url, record.path, offset, length, {})
        rig.ledger.record_etag(record.id, session.upload_id, url.chunk_index, etag)
    before = len(rig.fake.requests)
    record = rig.run(rig.store.get(record.id))
    assert (record.state, record.upload_id) == (State.INDEXING, session.upload_id)
    assert sorted(i for _, i, _ in chunk_puts(rig.fake, since=before)) == [4, 5, 6, 7, 8]
    assert len(rig.fake.uploads_by_id) == 1 and assembled(rig, record) == record.sha256


def test_a_session_named_by_an_earlier_owners_claim_is_continued_not_made_again(rig):
    """Several hosts: a takeover knows the session only from the claim (no ledger here)."""
    record = rig.queued("t.mp4", 8 * CHUNK, upload_method="multipart")
    session = rig.session(8 * CHUNK)
    reported = []
    for url in session.upload_urls[:3]:  # the earlier owner sent and reported three
        offset, length = session.chunk_range(url.chunk_index, 8 * CHUNK)
        etag = rig.assets.put_chunk(url.url, record.path, offset, length, {})
        reported.append(CompletedChunk(url.chunk_index, etag, length))
    rig.assets.report_chunks(session.upload_id, reported)
    # What ``takeover.continue_from`` gives the row: the ids, nothing of the shape.
    rig.store.update(record.id, upload_id=session.upload_id, asset_id=session.asset_id)
    fenced: list[str | None] = []
    stage = rig.stage()
    stage.fence = lambda: fenced.append(rig.store.get(record.id).upload_id)
    before = len(rig.fake.requests)
    stage.run(rig.store.get(record.id), rig.config.folders[0])
    record = rig.store.get(record.id)
    assert (record.state, record.upload_id) == (State.INDEXING, session.upload_id)
    assert sorted(i for _, i, _ in chunk_puts(rig.fake, since=before)) == [4, 5, 6, 7, 8]
    assert len(rig.fake.uploads_by_id) == 1 and assembled(rig, record) == record.sha256
    assert fenced and set(fenced) == {session.upload_id}


def test_a_new_session_is_fenced_before_its_first_chunk(rig):
    """Several hosts: the claim learns the session's ids before any chunk is sent."""
    record = rig.queued("n.mp4", 2 * CHUNK)
    puts_at_fence: list[int] = []
    stage = rig.stage()

    def fence() -> None:
        if rig.store.get(record.id).upload_id is not None:
            puts_at_fence.append(len(chunk_puts(rig.fake)))

    stage.fence = fence
    stage.run(record, rig.config.folders[0])
    assert puts_at_fence and puts_at_fence[0] == 0


@pytest.mark.parametrize("fate", ["expired", "unknown"])
def test_an_expired_or_unknown_session_is_not_resumed_and_its_etags_are_forgotten(rig, fate):
    record = rig.queued("e.mp4", 4 * CHUNK)
    old = rig.session(4 * CHUNK)
    upload_id = old.upload_id if fate == "expired" else "no-such-upload"
    rig.ledger.open_session(record.id, State.QUEUED, "as a crash left it",
                            SessionPrint(upload_id, record.sha256 or "", 4 * CHUNK, {}),
                            upload_id=upload_id, asset_id=old.asset_id, chunk_size=CHUNK,
                            total_chunks=4, upload_method="multipart")
    rig.ledger.record_etag(record.id, upload_id, 1, '"0123"')
    rig.fake.expire_upload(old.upload_id)
    record = rig.run(rig.store.get(record.id))
    assert record.state == State.INDEXING and record.upload_id not in (upload_id, None)
    assert rig.ledger.etags(upload_id) == {} and rig.ledger.fingerprint(upload_id) is None
    assert assembled(rig, record) == record.sha256
    assert any(f"session {upload_id} is {'expired' if fate == 'expired' else 'unknown'}"
               in (h["detail"] or "") for h in rig.store.history(record.id))


def test_a_session_made_for_other_content_is_given_up_not_resumed(rig):
    record = rig.queued("c.mp4", 4 * CHUNK)
    old = rig.session(4 * CHUNK)
    rig.ledger.open_session(record.id, State.QUEUED, "made for an older version",
                            SessionPrint(old.upload_id, "0" * 64, 4 * CHUNK, {}),
                            upload_id=old.upload_id, asset_id=old.asset_id, chunk_size=CHUNK,
                            total_chunks=4, upload_method="multipart")
    record = rig.run(rig.store.get(record.id))
    assert record.upload_id != old.upload_id and len(rig.fake.uploads_by_id) == 2
    assert not rig.fake.uploads_by_id[old.upload_id].stored
    assert assembled(rig, record) == record.sha256


def lost_create(rig: Rig, size: int, *, intent: float | None = None) -> FileRecord:
    """A row as a crash between the create request and its stored answer leaves it."""
    return rig.queued("lost.mp4", size, task_may_exist=1, upload_method="multipart",
                      upload_started_at=time.time() if intent is None else intent)


def test_exactly_one_untouched_session_of_the_size_and_time_is_adopted(rig):
    record = lost_create(rig, 3 * CHUNK)
    made = rig.session(3 * CHUNK)
    rig.session(2 * CHUNK)  # another size: not a candidate
    record = rig.run(record)
    assert (record.upload_id, record.asset_id) == (made.upload_id, made.asset_id)
    assert len(rig.fake.uploads_by_id) == 2 and assembled(rig, record) == record.sha256


@pytest.mark.parametrize("case", ["two match", "too early", "already has chunks"])
def test_a_doubtful_match_is_left_to_expire_and_a_new_session_made(rig, case):
    intent = time.time() - (3600 if case == "too early" else 0)
    record = lost_create(rig, 3 * CHUNK, intent=intent)
    candidates = [rig.session(3 * CHUNK) for _ in range(2 if case == "two match" else 1)]
    if case == "already has chunks":
        url = candidates[0].upload_urls[0]
        etag = rig.assets.put_chunk(url.url, record.path, 0, CHUNK, {})
        rig.assets.report_chunks(candidates[0].upload_id, [CompletedChunk(1, etag, CHUNK)])
    record = rig.run(record)
    assert record.upload_id not in {c.upload_id for c in candidates}
    assert len(rig.fake.uploads_by_id) == len(candidates) + 1
    assert record.state == State.INDEXING and record.task_may_exist == 0


def test_urls_come_in_windows_of_fifty_and_every_chunk_goes_once(rig):
    rig.fake.initial_url_count = 0
    record = rig.run(rig.queued("w.mp4", 120 * CHUNK))
    windows = rig.fake.count("POST", f"/assets/multipart-uploads/{record.upload_id}"
                                     "/presigned-urls")
    assert windows == 3  # 50 + 50 + 20
    assert Counter(i for _, i, _ in chunk_puts(rig.fake)) == Counter(range(1, 121))


def test_the_shared_connection_cap_holds_across_two_files(rig):
    watch = StorageWatch(rig.fake, delay=0.03)
    one = threading.BoundedSemaphore(1)
    records = [rig.queued(f"s{n}.mp4", 6 * CHUNK) for n in range(2)]
    stages = [rig.stage(one) for _ in records]
    threads = [threading.Thread(target=s.run, args=(r, rig.config.folders[0]))
               for s, r in zip(stages, records, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert [rig.store.get(r.id).state for r in records] == [State.INDEXING] * 2
    assert watch.peak == 1  # three per file allowed, one connection in all


def test_a_file_that_changes_mid_upload_gives_the_session_up(rig):
    record = rig.queued("g.mp4", 10 * CHUNK)

    def grow(session: Any) -> None:
        if len(session.stored) == 2:
            with open(record.path, "ab") as fh:
                fh.write(b"more")

    StorageWatch(rig.fake, delay=0.02, after=grow)
    with pytest.raises(FileChanged, match="session was given up"):
        rig.stage().run(record, rig.config.folders[0])
    after = rig.store.get(record.id)
    assert after.upload_id is None and after.asset_id is None
    (session,) = rig.fake.uploads_by_id.values()
    assert rig.ledger.fingerprint(session.upload_id) is None
    assert rig.ledger.etags(session.upload_id) == {}


def test_status_list_and_explain_show_chunks_done_of_all_and_the_session_expiry(rig):
    from watcherd.cli.explain import explain
    from watcherd.cli.listing import list_rows
    from watcherd.cli.render import iso
    from watcherd.cli.status import _active_row, build_status

    record = rig.queued("v.mp4", 8 * CHUNK)
    expires = time.time() + 3600
    rig.ledger.open_session(record.id, State.UPLOADING, "mid-upload",
                            SessionPrint("up1", record.sha256 or "", 8 * CHUNK, {}),
                            upload_id="up1", asset_id="as1", chunk_size=CHUNK, total_chunks=8,
                            session_expires_at=expires, upload_method="multipart")
    for index in (1, 2, 3):
        rig.ledger.record_etag(record.id, "up1", index, f'"etag{index}"')
    wanted = {"upload_id": "up1", "chunks_done": 3, "chunks_total": 8,
              "expires_at": iso(expires)}
    (entry,) = build_status(rig.config, rig.store)["active"]
    assert entry["session"] == wanted
    assert "chunk 3/8, session expires " in _active_row(entry)[2]
    (row,) = list_rows(rig.store, None, None)
    assert row["session"] == wanted and row["upload_method"] == "multipart"
    said = explain(rig.config, rig.store, record.path)
    assert said["details"]["session"] == wanted
    assert "chunk 3/8, session expires" in said["summary"]
    rig.store.transition(record.id, State.QUEUED, "retrying in 2s: HTTP 503")
    said = explain(rig.config, rig.store, record.path)
    assert said["details"]["session"] == wanted
    assert "its upload resumes at chunk 3/8, session expires" in said["summary"]
    rig.ledger.close_session(record.id, State.INDEXING, "handed on", asset_id="as1")
    (row,) = list_rows(rig.store, None, None)
    assert row["session"] is None  # complete: no chunk count to show any more


def test_a_failed_chunk_put_goes_again_later_with_a_fresh_url(rig):
    rig.fake.inject("PUT", "/_storage", status=503, body="<Error><Code>SlowDown</Code></Error>")
    started, cpu = time.monotonic(), time.process_time()
    record = rig.run(rig.queued("f.mp4", 4 * CHUNK))
    # Waiting out the delay with nothing in flight is waiting, not spinning.
    assert time.process_time() - cpu < 0.5 * (time.monotonic() - started)
    puts = chunk_puts(rig.fake)
    (failed,) = [index for _, index, status in puts if status == 503]
    assert [i for _, i, _ in puts].count(failed) == 2  # refused once, then stored
    assert Counter(i for _, i, status in puts if status == 200) == Counter(range(1, 5))
    # The create answer had a URL for every chunk: asking for more means a fresh one.
    assert rig.fake.count("POST", f"/assets/multipart-uploads/{record.upload_id}"
                                  "/presigned-urls") == 1
    assert time.monotonic() - started >= 0.75  # after the backoff's first delay
    assert record.state == State.INDEXING and assembled(rig, record) == record.sha256


def test_the_sessions_upload_headers_go_with_every_chunk_also_after_a_resume(rig):
    rig.fake.upload_headers = {"x-amz-server-side-encryption": "AES256"}
    record = rig.queued("h.mp4", 6 * CHUNK)
    stop_after_two = threading.Event()
    StorageWatch(rig.fake, after=lambda s: len(s.stored) >= 2 and stop_after_two.set())
    stage = rig.stage()
    stage.stop = stop_after_two  # a shutdown after two chunks: the session is kept
    stage.run(record, rig.config.folders[0])
    assert rig.store.get(record.id).state == State.QUEUED
    record = rig.run(rig.store.get(record.id))  # resumed: the headers come from the ledger
    assert record.state == State.INDEXING and len(rig.fake.uploads_by_id) == 1
    assert all(status == 200 for _, _, status in chunk_puts(rig.fake))
    assert assembled(rig, record) == record.sha256


@pytest.mark.parametrize(("folder_method", "row", "path"), [
    ("auto", {}, "multipart"),
    ("multipart", {}, "multipart"),
    ("tasks", {}, "tasks"),
    ("tasks", {"task_may_exist": 1, "upload_method": "multipart"}, "multipart"),
    ("tasks", {"upload_id": "u1", "upload_method": "multipart"}, "multipart"),
    ("auto", {"task_may_exist": 1, "upload_method": "tasks"}, "tasks"),
    ("auto", {"task_may_exist": 1}, "tasks"),  # a rebuilt database: look for a task first
    ("auto", {"upload_method": "tasks"}, "multipart"),  # a settled attempt binds nothing
])
def test_the_upload_path_follows_the_folder_unless_an_attempt_is_in_doubt(
        rig, folder_method, row, path):
    from dataclasses import replace

    from watcherd.ingest.method import UploadPaths
    from watcherd.ingest.upload import upload_path

    record = rig.queued("p.mp4", CHUNK, **row)
    folder = replace(rig.config.folders[0], upload_method=folder_method)
    route = UploadPaths(lambda: rig.config).route(folder.upload_method, CHUNK)
    assert upload_path(record, route) == path
