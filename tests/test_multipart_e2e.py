"""The multipart stage end to end: the real daemon against the strict simulator.

Chunks are small (64 KiB) and files a few MiB, so a session has tens of chunks and a
test takes seconds. The simulator runs in this process: a test reads its sessions and
requests directly, and slows or disturbs its storage side by wrapping its methods.
"""

from __future__ import annotations

import hashlib
import random
import re
import signal
import sqlite3
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TEST_KEY, DaemonRunner, wait_for
from watcherd.simulator import FakeTwelveLabs
from watcherd.simulator.uploads import STORAGE_PREFIX

pytestmark = pytest.mark.timeout(90)

CHUNK = 64 << 10


@pytest.fixture
def fake_api(tmp_path) -> Iterator[FakeTwelveLabs]:
    """The simulator keeping the bytes it receives, so an asset's sha256 can be checked."""
    with FakeTwelveLabs(api_key=TEST_KEY, store_dir=tmp_path / "fake-store") as fake:
        fake.multipart_chunk_size = CHUNK
        yield fake
    assert fake.errors == [], "the fake itself crashed:\n" + "\n".join(fake.errors)


@pytest.fixture
def multipart(daemon: DaemonRunner) -> DaemonRunner:
    daemon.settings.update(upload_method="multipart", chunk_concurrency=3)
    return daemon


def clip(valid_clip: Path, target: Path, size: int, seed: int = 1) -> Path:
    """A valid clip grown to ``size`` bytes with a top-level ``free`` box of seeded noise."""
    data = valid_clip.read_bytes()
    pad = size - len(data) - 8
    target.write_bytes(data + struct.pack(">I4s", pad + 8, b"free")
                       + random.Random(seed).randbytes(pad))
    return target


def drop(daemon: DaemonRunner, source: Path, name: str) -> Path:
    """Appear in the inbox whole (a rename within one filesystem)."""
    staged = daemon.root / name
    staged.write_bytes(source.read_bytes())
    return staged.rename(daemon.inbox / name)


def row(daemon: DaemonRunner, name: str) -> dict[str, Any]:
    """The file's live row, read straight from the database (the daemon may be dead)."""
    with closing(sqlite3.connect(f"file:{daemon.settings['state_db']}?mode=ro",
                                 uri=True)) as conn:
        conn.row_factory = sqlite3.Row
        found = conn.execute("SELECT * FROM files WHERE path LIKE ? ORDER BY id DESC",
                             (f"%/{name}",)).fetchone()
    return dict(found) if found else {}


def indexing(daemon: DaemonRunner, name: str, timeout: float = 30) -> dict[str, Any]:
    """Wait for the hand-off to indexing: the row has its asset (the indexing step may
    have taken it further already)."""
    return wait_for(lambda: (r := row(daemon, name)).get("asset_id") and r.get("state") in
                    ("indexing", "finalizing", "done") and r,
                    timeout, lambda: f"{name} handed on; log:\n{daemon.log()[-4000:]}")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def chunk_puts(fake: FakeTwelveLabs, *, since: int = 0) -> list[tuple[str, int, int]]:
    """(upload id, chunk index, status) of every PUT to a presigned URL, in order."""
    out = []
    for rec in fake.requests[since:]:
        if rec.method == "PUT" and rec.path.startswith(STORAGE_PREFIX):
            url = fake._urls[rec.path[len(STORAGE_PREFIX):]]
            out.append((url.upload_id, url.chunk_index, rec.status))
    return out


class StorageWatch:
    """Wraps the simulator's chunk store: counts PUTs in flight, may slow each one, and
    calls ``after`` with the session once each chunk is stored."""

    def __init__(self, fake: FakeTwelveLabs, delay: float = 0.0,
                 after: Callable[[Any], None] | None = None) -> None:
        self.fake, self.delay, self.after = fake, delay, after
        self.lock = threading.Lock()
        self.in_flight = self.peak = 0
        self.original = fake._store_chunk
        fake._store_chunk = self._store  # type: ignore[method-assign]

    def _store(self, session: Any, index: int, pieces: Iterator[bytes]) -> str:
        with self.lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        try:
            time.sleep(self.delay)
            etag = self.original(session, index, pieces)
        finally:
            with self.lock:
                self.in_flight -= 1
        if self.after is not None:
            self.after(session)
        return etag


def test_a_file_goes_up_in_parallel_chunks_once_each_and_ends_in_done(
        multipart, fake_api, valid_clip):
    source = clip(valid_clip, multipart.root / "src.mp4", 40 * CHUNK + 123)
    watch = StorageWatch(fake_api, delay=0.05)
    multipart.start()
    drop(multipart, source, "big.mp4")
    found = indexing(multipart, "big.mp4")
    (session,) = fake_api.uploads_by_id.values()
    assert (found["upload_method"], found["upload_id"], found["asset_id"]) == \
        ("multipart", session.upload_id, session.asset_id)
    assert found["task_may_exist"] == 0 and found["uploaded_at"]
    assert found["total_chunks"] == session.total_chunks == 41
    assert found["chunk_size"] == CHUNK  # the server's choice
    # Every chunk sent exactly once, and what arrived is the file.
    assert Counter(index for _, index, status in chunk_puts(fake_api) if status == 200) == \
        Counter(range(1, 42))
    assert fake_api.assets[session.asset_id].sha256 == sha256(source)
    assert fake_api.key_leaks == []
    assert 1 < watch.peak <= 3  # parallel, never more than chunk_concurrency
    assert fake_api.count("POST", f"/assets/multipart-uploads/{session.upload_id}") >= 2
    # The journal counts chunks too.
    assert re.search(r"uploading big\.mp4: \d+% \(.*, chunk \d+/41\)", multipart.log())
    # The indexing step takes the asset on to done/: indexed once, from this asset.
    side = multipart.sidecar(multipart.wait_done("big.mp4", timeout=30))
    (made,) = fake_api.indexed_assets.values()
    assert (side["status"], side["upload_method"], side["asset_id"]) == \
        ("ready", "multipart", session.asset_id)
    assert made.asset_id == session.asset_id and side["sha256"] == sha256(source)
    assert fake_api.count("POST", "/tasks") == 0


def test_a_url_that_expired_is_replaced_by_a_fresh_one(multipart, fake_api, valid_clip):
    source = clip(valid_clip, multipart.root / "src.mp4", 12 * CHUNK)
    expired: list[str] = []

    def expire_the_rest(session: Any) -> None:
        if not expired:  # after the first chunk: every URL handed out so far expires
            with fake_api._assets_lock:
                for token, url in fake_api._urls.items():
                    if not url.used:
                        url.expires_ms = 0
                        expired.append(token)

    StorageWatch(fake_api, after=expire_the_rest)
    multipart.settings["chunk_concurrency"] = 1
    multipart.start()
    drop(multipart, source, "late.mp4")
    found = indexing(multipart, "late.mp4")
    puts = chunk_puts(fake_api)
    assert expired and any(status == 403 for _, _, status in puts)
    assert Counter(i for _, i, status in puts if status == 200) == Counter(range(1, 13))
    assert fake_api.count("POST", f"/assets/multipart-uploads/{found['upload_id']}"
                          "/presigned-urls") >= 1
    assert len(fake_api.uploads_by_id) == 1
    assert fake_api.assets[found["asset_id"]].sha256 == sha256(source)


def test_an_expired_session_is_replaced_by_a_new_one(multipart, fake_api, valid_clip):
    source = clip(valid_clip, multipart.root / "src.mp4", 16 * CHUNK)

    def expire_after_five(session: Any) -> None:
        if len(fake_api.uploads_by_id) == 1 and len(session.stored) == 5:
            fake_api.expire_upload(session.upload_id)

    StorageWatch(fake_api, delay=0.02, after=expire_after_five)
    multipart.start()
    drop(multipart, source, "slow.mp4")
    found = indexing(multipart, "slow.mp4")
    first, second = fake_api.uploads_by_id.values()
    assert found["upload_id"] == second.upload_id and found["asset_id"] == second.asset_id
    assert len(second.stored) == 16 and second.completed_at is not None
    assert first.completed_at is None
    assert fake_api.assets[second.asset_id].sha256 == sha256(source)
    assert "upload_expired" in multipart.log() and "giving the session up" in multipart.log()


def test_a_lost_create_answer_adopts_the_one_session_it_made(multipart, fake_api,
                                                             valid_clip):
    source = clip(valid_clip, multipart.root / "src.mp4", 6 * CHUNK)
    fake_api.inject("POST", "/assets/multipart-uploads", action="create_then_reset")
    multipart.start()
    drop(multipart, source, "lost.mp4")
    found = indexing(multipart, "lost.mp4")
    (session,) = fake_api.uploads_by_id.values()  # no second session
    assert (found["upload_id"], found["asset_id"]) == (session.upload_id, session.asset_id)
    assert fake_api.count("POST", "/assets/multipart-uploads") - \
        fake_api.count("POST", "/assets/multipart-uploads/") == 1
    assert fake_api.count("GET", "/assets/multipart-uploads") >= 1  # the incomplete list
    assert "adopted session" in multipart.log()
    assert fake_api.assets[session.asset_id].sha256 == sha256(source)


def test_a_file_changed_mid_upload_gives_its_session_up_and_settles_again(
        multipart, fake_api, valid_clip):
    source = clip(valid_clip, multipart.root / "src.mp4", 30 * CHUNK)
    target: list[Path] = []

    def grow_after_four(session: Any) -> None:
        if len(fake_api.uploads_by_id) == 1 and len(session.stored) == 4:
            with open(target[0], "ab") as fh:  # a writer appends another box
                fh.write(struct.pack(">I4s", 8 + CHUNK, b"free") + bytes(CHUNK))

    StorageWatch(fake_api, delay=0.05, after=grow_after_four)
    multipart.start()
    target.append(drop(multipart, source, "growing.mp4"))
    found = indexing(multipart, "growing.mp4")
    first, second = fake_api.uploads_by_id.values()
    assert first.completed_at is None and len(first.stored) < first.total_chunks
    assert (found["upload_id"], found["size"]) == (second.upload_id, 31 * CHUNK + 8)
    assert fake_api.assets[second.asset_id].sha256 == sha256(target[0])
    assert "changed mid-upload" in multipart.log()


def test_killed_mid_chunks_the_restart_resumes_the_session_sending_only_what_is_missing(
        multipart, fake_api, valid_clip):
    source = clip(valid_clip, multipart.root / "src.mp4", 40 * CHUNK)
    StorageWatch(fake_api, delay=0.05)
    multipart.settings["chunk_concurrency"] = 2
    multipart.start()
    drop(multipart, source, "kill.mp4")
    wait_for(lambda: any(len(s.stored) >= 10 for s in fake_api.uploads_by_id.values()),
             timeout=30, what=lambda: multipart.log()[-3000:])
    assert multipart.stop(signal.SIGKILL) == -signal.SIGKILL
    (session,) = fake_api.uploads_by_id.values()
    time.sleep(0.2)  # chunks in flight at the kill land or fail now
    stored_before = set(session.stored)
    requests_before = len(fake_api.requests)
    multipart.start()
    found = indexing(multipart, "kill.mp4")
    assert len(fake_api.uploads_by_id) == 1 and found["upload_id"] == session.upload_id
    again = [i for _, i, status in chunk_puts(fake_api, since=requests_before)
             if status == 200]
    # Only what was missing went again: at most the chunks in flight at the kill (their
    # ETags had not been stored yet) on top.
    assert set(again) >= set(range(1, 41)) - stored_before
    assert len(set(again) & stored_before) <= 2
    assert fake_api.assets[session.asset_id].sha256 == sha256(source)
    assert "resuming session" in multipart.log()


def test_an_account_refused_multipart_sends_the_file_with_tasks(daemon, fake_api, valid_clip):
    fake_api.multipart_forbidden = True
    daemon.settings["upload_method"] = "auto"
    daemon.start()
    drop(daemon, valid_clip, "refused.mp4")
    side = daemon.sidecar(daemon.wait_done("refused.mp4"))
    assert side["task_id"] in fake_api.tasks and fake_api.uploads_by_id == {}
    assert row(daemon, "refused.mp4")["upload_method"] == "tasks"
