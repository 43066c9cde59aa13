"""Costs that stay flat as history grows (issue 15): counters, retention, a quick clean start."""

from __future__ import annotations

import logging
import sqlite3

import pytest

from watcherd.service.retention import Retention
from watcherd.state.states import FINAL_STATES, State
from watcherd.state.store import Store

DAY = 86400.0


class Clock:
    def __init__(self, now: float = 1_000_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store(tmp_path, clock):
    s = Store(tmp_path / "state.db", clock=clock).open()
    yield s
    s.close()


def tables_read(store: Store, call) -> set[str]:
    """The tables SQLite reads while ``call`` runs on this thread's connection."""
    seen: set[str] = set()

    def authorizer(action, arg1, _arg2, _db, _trigger):
        if action == sqlite3.SQLITE_READ:
            seen.add(arg1)
        return sqlite3.SQLITE_OK

    conn = store._conn()
    conn.set_authorizer(authorizer)
    try:
        call()
    finally:
        conn.set_authorizer(None)
    return seen


def finished(store: Store, path: str, state: str = State.DONE, *, sha: str | None = None,
             outcome: str | None = None, folder: str = "/in"):
    rec = store.add(path=path, folder=folder, index_id="idx", detail="found by scan")
    store.transition(rec.id, State.QUEUED, "settled", sha256=sha)
    return store.transition(rec.id, state, "finished", outcome=outcome)


def test_counts_are_kept_by_the_database_and_never_count_the_files_table(store):
    a = store.add(path="/in/a.mp4", folder="/in", index_id="idx")
    store.add(path="/in/b.mp4", folder="/in", index_id="idx")
    store.add(path="/other/c.mp4", folder="/other", index_id="idx")
    store.transition(a.id, State.FAILED, "bad")
    assert tables_read(store, store.counts) == {"state_counts"}
    assert tables_read(store, store.counts_by_folder) == {"state_counts"}
    assert store.counts() == {State.SETTLING: 2, State.FAILED: 1}
    assert sorted(store.counts_by_folder()) == [("/in", "failed", 1), ("/in", "settling", 1),
                                               ("/other", "settling", 1)]


def test_counters_are_filled_once_when_an_older_database_is_opened(tmp_path):
    path = tmp_path / "state.db"
    store = Store(path).open()
    for n in range(5):
        finished(store, f"/in/{n}.mp4", State.DONE if n % 2 else State.FAILED)
    store.close()
    with sqlite3.connect(path) as conn:  # as a release before the counters left it
        for name in ("count_insert", "count_update", "count_delete"):
            conn.execute(f"DROP TRIGGER {name}")
        conn.execute("DROP TABLE state_counts")
    again = Store(path).open()
    assert again.counts() == {State.DONE: 2, State.FAILED: 3}
    again.close()


def test_a_clean_stop_lets_the_next_open_skip_the_full_integrity_check(tmp_path):
    path = tmp_path / "state.db"
    Store(path).open().close()  # an unclean stop (no mark): the next open checks

    def checks_on_open() -> bool:
        store = Store(path)
        ran: list[str] = []
        store._conn().set_trace_callback(ran.append)
        store.open()
        store.close()
        return any("quick_check" in sql for sql in ran)

    assert checks_on_open()
    store = Store(path).open()
    store.mark_closed_cleanly()
    store.close()
    assert not checks_on_open()
    assert checks_on_open()  # the mark is used once: a crash after this start checks again


def test_prune_forgets_old_finished_rows_and_history_but_keeps_what_dedupe_needs(store, clock):
    kept = finished(store, "/in/uploaded.mp4", sha="s1", outcome="ready")
    failed = finished(store, "/in/bad.mp4", State.FAILED, sha="s2")
    vanished = finished(store, "/in/gone.mp4", State.VANISHED)
    duplicate = finished(store, "/in/same.mp4", State.DONE, sha="s1")  # no task of its own
    clock.now += 100 * DAY
    recent = finished(store, "/in/recent.mp4", State.FAILED)
    live = store.add(path="/in/waiting.mp4", folder="/in", index_id="idx")
    cutoff = clock.now - 90 * DAY
    while store.prune(cutoff, batch=1):
        pass
    ids = {r.id for r in store.all()}
    assert ids == {kept.id, recent.id, live.id}
    assert not {failed.id, vanished.id, duplicate.id} & ids
    assert store.history(kept.id) == []  # its history went; the row that dedupe reads stays
    assert len(store.history(recent.id)) == 3 and len(store.history(live.id)) == 1
    later = store.add(path="/in/copy.mp4", folder="/in", index_id="idx", sha256="s1")
    assert store.content_holder(later).id == kept.id
    assert store.counts() == {State.DONE: 1, State.FAILED: 1, State.SETTLING: 2}
    assert store.prune(cutoff, batch=10) == 0  # nothing left: the pass ends


def test_retention_prunes_in_small_batches_then_rests_and_vacuums(store, clock, caplog):
    caplog.set_level(logging.INFO, logger="watcherd.service.retention")
    for n in range(1200):
        finished(store, f"/in/{n}.mp4", FINAL_STATES[n % 2 + 1])
    clock.now += 91 * DAY
    turn = Clock(0.0)
    retention = Retention(store, lambda: 90.0, clock=clock, monotonic=turn)
    before = store.free_bytes()
    batches = []
    for _ in range(10):
        left = len(store.all())
        retention.tick()
        batches.append(left - len(store.all()))
        turn.now += 1.0
    assert batches[:3] == [500, 500, 200]  # one short transaction per turn
    assert store.all() == []
    assert "forgot 4800 history line(s) and file row(s)" in caplog.text
    assert store.vacuum_some(1) == 0 and store.free_bytes() <= before  # pages went back
    assert retention.next_turn >= turn.now + 3000  # resting until the next hour


def test_retention_zero_keeps_everything(store, clock):
    finished(store, "/in/a.mp4", State.FAILED)
    clock.now += 1000 * DAY
    Retention(store, lambda: 0.0, clock=clock).tick()
    assert len(store.all()) == 1


def test_history_retention_days_defaults_to_90_and_must_not_be_negative(tmp_path):
    from pathlib import Path

    from watcherd.config import parse_config
    from watcherd.errors import ConfigError

    raw = {"folders": [{"path": str(tmp_path), "index_id": "idx"}]}
    env = {"TWELVELABS_API_KEY": "k"}
    assert parse_config(raw, base_dir=Path("/etc"), env=env).history_retention_days == 90
    with pytest.raises(ConfigError, match="history_retention_days"):
        parse_config({**raw, "history_retention_days": -1}, base_dir=Path("/etc"), env=env)
