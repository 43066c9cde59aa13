"""SQLite tracker: transitions with history, one live row per path, thread safety."""

from __future__ import annotations

import sqlite3
import threading
from itertools import pairwise

import pytest

from watcherd.state.schema import SCHEMA, UPDATABLE, Changes, Fields
from watcherd.state.states import State
from watcherd.state.store import ContentTaken, CorruptDatabase, StaleState, Store


@pytest.fixture
def store(tmp_path):
    clock = iter(range(1000, 100000))
    s = Store(tmp_path / "state.db", clock=lambda: float(next(clock))).open()
    yield s
    s.close()


def test_transitions_are_recorded_in_history_with_timestamps(store, caplog):
    caplog.set_level("INFO", logger="watcherd.state.store")
    rec = store.add(path="/in/a.mp4", folder="/in", index_id="idx", detail="found by scan")
    store.transition(rec.id, State.QUEUED, "settled", size=10, mtime_ns=5)
    rec = store.transition(rec.id, State.UPLOADING, attempts=1)
    rec = store.transition(rec.id, State.INDEXING, task_id="t1", video_id="v1")
    assert (rec.state, rec.size, rec.task_id, rec.attempts) == ("indexing", 10, "t1", 1)
    history = store.history(rec.id)
    assert [h["to_state"] for h in history] == ["settling", "queued", "uploading", "indexing"]
    assert history[0]["detail"] == "found by scan"
    assert all(b["at"] > a["at"] for a, b in pairwise(history))
    assert "/in/a.mp4: uploading -> indexing task=t1" in caplog.text


def test_only_one_live_row_per_path_but_finished_rows_stay(store):
    rec = store.add(path="/in/a.mp4", folder="/in", index_id="idx")
    with pytest.raises(sqlite3.IntegrityError):
        store.add(path="/in/a.mp4", folder="/in", index_id="idx")
    store.transition(rec.id, State.DONE)
    again = store.add(path="/in/a.mp4", folder="/in", index_id="idx")
    assert store.active_by_path("/in/a.mp4").id == again.id
    assert store.counts() == {"done": 1, "settling": 1}


def test_expect_guards_against_stale_transitions(store):
    rec = store.add(path="/in/a.mp4", folder="/in", index_id="idx")
    with pytest.raises(StaleState):
        store.transition(rec.id, State.INDEXING, expect=(State.UPLOADING,))
    assert store.get(rec.id).state == State.SETTLING


def test_unknown_columns_are_refused(store):
    rec = store.add(path="/in/a.mp4", folder="/in", index_id="idx")
    with pytest.raises(ValueError):
        store.update(rec.id, api_key="x")


def test_the_typed_changes_name_exactly_the_columns_a_write_may_set():
    # mypy checks the keywords against Changes; the store checks them against UPDATABLE.
    assert Changes.__optional_keys__ == UPDATABLE and not Changes.__required_keys__
    assert Fields.__optional_keys__ == UPDATABLE - {"index_id"}  # add() takes index_id itself


def test_json_columns_round_trip(store):
    rec = store.add(path="/in/a.mp4", folder="/in", index_id="idx")
    store.update(rec.id, facts={"width": 640}, task_json={"status": "ready"})
    rec = store.get(rec.id)
    assert rec.media_facts() == {"width": 640} and rec.task() == {"status": "ready"}


def test_concurrent_writers_on_their_own_connections_lose_nothing(tmp_path):
    store = Store(tmp_path / "state.db").open()
    ids = [store.add(path=f"/in/{n}.mp4", folder="/in", index_id="i").id for n in range(4)]

    def bump(file_id: int) -> None:
        for _ in range(50):
            rec = store.get(file_id)
            store.update(file_id, attempts=rec.attempts + 1)

    threads = [threading.Thread(target=bump, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [store.get(i).attempts for i in ids] == [50] * 4
    readonly = Store(tmp_path / "state.db", readonly=True)
    assert len(readonly.all()) == 4
    readonly.close()
    store.close()


def test_claiming_content_is_atomic_and_the_older_waiting_row_wins(store):
    a = store.add(path="/in/a.mp4", folder="/in", index_id="idx", state=State.QUEUED,
                  sha256="s1")
    b = store.add(path="/in/b.mp4", folder="/in", index_id="idx", state=State.QUEUED,
                  sha256="s1")
    other_index = store.add(path="/in2/c.mp4", folder="/in2", index_id="idx2",
                            state=State.QUEUED, sha256="s1")
    store.transition(a.id, State.UPLOADING, claim_content=True, attempts=1)
    with pytest.raises(ContentTaken) as taken:
        store.transition(b.id, State.UPLOADING, claim_content=True, attempts=1)
    assert taken.value.holder.id == a.id and store.get(b.id).state == State.QUEUED
    store.transition(other_index.id, State.UPLOADING, claim_content=True)  # another index
    store.transition(a.id, State.QUEUED, "retrying")  # a's attempt may have made a task
    assert store.content_holder(store.get(b.id)).id == a.id
    assert store.content_holder(store.get(a.id)) is None  # b is younger and never tried
    store.transition(a.id, State.FAILED, outcome="failed")
    assert store.content_holder(store.get(b.id)) is None  # failed content holds nothing


def test_a_database_from_before_a_column_was_added_is_upgraded(tmp_path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA.replace("updated_at REAL NOT NULL,\n    duplicate_of INTEGER",
                                      "updated_at REAL NOT NULL"))
    conn.close()
    store = Store(path).open()
    rec = store.add(path="/in/a.mp4", folder="/in", index_id="idx", duplicate_of=7)
    assert store.get(rec.id).duplicate_of == 7
    store.close()


def test_an_upgraded_database_looks_for_a_task_wherever_an_attempt_had_no_answer(tmp_path):
    """Rows from before ``task_may_exist``: an attempt without a task may have made one."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA.replace(",\n    task_may_exist INTEGER NOT NULL DEFAULT 0,\n"
                                      "    indexing_seconds REAL", ""))
    assert "task_may_exist" not in {row[1] for row in conn.execute("PRAGMA table_info(files)")}
    rows = {"tried": ("queued", 5.0, None), "never tried": ("queued", None, None),
            "has its task": ("indexing", 5.0, "t1"), "crashed mid-body": ("uploading", 5.0, None)}
    for name, (state, started, task) in rows.items():
        conn.execute("INSERT INTO files (path, folder, index_id, state, upload_started_at, "
                     "task_id, discovered_at, updated_at) VALUES (?, '/in', 'idx', ?, ?, ?, 1, 1)",
                     (name, state, started, task))
    conn.commit()
    conn.close()
    store = Store(path).open()
    flags = {r.path: r.task_may_exist for r in store.all()}
    assert flags == {"tried": 1, "never tried": 0, "has its task": 0, "crashed mid-body": 1}
    assert {r.indexing_seconds for r in store.all()} == {None}
    tried = next(r for r in store.all() if r.path == "tried")
    store.update(tried.id, task_may_exist=0)  # a later definitive answer
    store.close()
    again = Store(path).open()
    assert again.get(tried.id).task_may_exist == 0  # the backfill ran once, at the upgrade
    again.close()


def test_claiming_content_checks_the_index_the_row_moves_to(store):
    """A reload changed the folder's index: the claim is about the new index."""
    store.add(path="/in/a.mp4", folder="/in", index_id="new", state=State.UPLOADING,
              sha256="s1", attempts=1)
    b = store.add(path="/in/b.mp4", folder="/in", index_id="old", state=State.QUEUED,
                  sha256="s1")
    with pytest.raises(ContentTaken):
        store.transition(b.id, State.UPLOADING, claim_content=True, index_id="new")
    moved = store.transition(b.id, State.QUEUED, "the index changed", index_id="other")
    assert moved.index_id == "other"


@pytest.mark.parametrize("damage", ["garbage", "torn page"])
def test_a_damaged_database_is_reported_as_corrupt(tmp_path, damage):
    path = tmp_path / "state.db"
    store = Store(path).open()
    for n in range(300):
        store.add(path=f"/in/{n}.mp4", folder="/in", index_id="idx", reason="x" * 200)
    store.close()
    data = bytearray(path.read_bytes())
    if damage == "garbage":
        data[:100] = b"\x00" * 100  # the header: "file is not a database"
    else:
        data[8192:16384] = b"\xff" * 8192  # b-tree pages in the middle
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptDatabase):
        Store(path).open()


def test_the_runtime_snapshot_reads_back_as_written_with_left_out_lists_empty(tmp_path):
    from watcherd.state.runtime import snapshot_from_json, snapshot_to_json

    store = Store(tmp_path / "state.db", clock=lambda: 42.0).open()
    snapshot = {"pid": 7, "version": "1", "started_at": 1.0,
                "folders": [{"path": "/in", "mode": "polling", "healthy": True,
                             "problem": None, "last_scan": 2.0}],
                "uploads": [{"file_id": 1, "path": "/in/a.mp4", "sent": 5, "total": 10,
                             "rate": None}],
                "gate": {"state": "running", "reason": None, "kind": None, "fix": None,
                         "until": None},
                "paused_indexes": {"idx": "gone"}, "problems": ["observer down"],
                "upload_paths": {"multipart_refused": "HTTP 403", "tasks_removed": None,
                                 "fallback": True, "waiting": 1}}
    store.publish_runtime(snapshot)
    assert store.runtime() == (snapshot, 42.0)
    assert snapshot_from_json(snapshot_to_json(snapshot)) == snapshot
    assert snapshot_from_json('{"pid": 7, "version": "1", "started_at": 1.0}') == {
        "pid": 7, "version": "1", "started_at": 1.0, "folders": [], "uploads": [],
        "gate": None, "paused_indexes": {}, "problems": [], "upload_paths": None}
    store.close()
