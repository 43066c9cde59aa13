"""The claim store against a real PostgreSQL server: exactly one host per file, takeover,
fencing, migrations racing; and the ``coordination:`` settings."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest

from tests.pgserver import pg_fixture  # noqa: F401 (the fixture)
from watcherd.cluster.claims import ClaimBook, Identity
from watcherd.cluster.connection import open_connection
from watcherd.cluster.coordinator import Coordinator
from watcherd.cluster.schema import VERSION, migrate
from watcherd.cluster.settings import CoordinationConfig, read_dsn
from watcherd.cluster.share import share_id
from watcherd.config import parse_config
from watcherd.errors import ClaimLost, ConfigError, CoordinationUnavailable
from watcherd.service.startcheck import check_at_start
from watcherd.state.instance import (
    CLUSTER_MARKER_NAME,
    FOLDER_LOCK_NAME,
    AlreadyRunning,
    InstanceLock,
)
from watcherd.state.schema import FileRecord
from watcherd.state.states import State
from watcherd.state.store import Store

KEY = Identity("share-1", b"sub/clip.mp4", 1234, 5678)


@pytest.fixture
def book(pg):
    """``book(owner, lease)``: a host's view of the claims (connections closed after)."""
    books: list[ClaimBook] = []

    def make(owner: str, lease: float = 30.0) -> ClaimBook:
        conn = pg.connect()
        migrate(conn, pg.schema)
        books.append(ClaimBook(conn, owner, lease))
        return books[-1]

    yield make
    for made in books:
        made.conn.close()


def race(count: int, action) -> list:
    """Run ``action(n)`` in ``count`` threads released at the same moment."""
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def run(n: int) -> None:
        barrier.wait()
        results[n] = action(n)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def test_migrations_racing_on_an_empty_database_create_the_schema_once(pg):
    conns = [pg.connect() for _ in range(6)]
    try:
        found = race(6, lambda n: migrate(conns[n], pg.schema))
        assert sorted(found) == [0] + [VERSION] * 5  # one created it, the rest found it
        versions = [r["version"] for r in conns[0].execute("SELECT version FROM schema_version")]
        assert versions == list(range(1, VERSION + 1))
    finally:
        for conn in conns:
            conn.close()


def test_one_host_wins_a_file_claimed_by_eight_at_once(book):
    books = [book(f"h{n}") for n in range(8)]
    won = race(8, lambda n: books[n].insert(KEY, "idx"))
    assert sum(claim is not None for claim in won) == 1
    winner = next(claim for claim in won if claim is not None)
    assert books[0].get(KEY).owner == winner.owner


def test_an_expired_claim_is_taken_over_by_exactly_one_host_and_fences_its_owner(book):
    owner = book("dead", lease=0.2)
    claim = owner.insert(KEY, "idx")
    assert owner.record(claim, task_id="task-1") is not None
    others = [book(f"h{n}") for n in range(5)]
    assert others[0].take_expired(["share-1"], 10) == []  # lease still running
    time.sleep(0.3)
    taken = race(5, lambda n: others[n].take_expired(["share-1"], 10))
    winners = [claims[0] for claims in taken if claims]
    assert len(winners) == 1
    new = winners[0]
    assert (new.previous, new.epoch, new.takeovers, new.task_id) == ("dead", 2, 1, "task-1")
    # The old owner, back from its pause, is refused before its next side effect.
    assert owner.record(claim, phase="finalizing") is None
    assert owner.get(KEY).owner == new.owner
    winner_book = next(b for b in others if b.owner == new.owner)
    assert winner_book.record(new, phase="finalizing").phase == "finalizing"


def test_renewal_keeps_a_claim_and_reports_what_was_lost(book):
    mine = book("a", lease=0.3)
    claim = mine.insert(KEY, "idx")
    other = mine.insert(Identity("share-1", b"other.mp4", 1, 1), "idx")
    time.sleep(0.2)
    assert mine.renew_all() == {claim.id: 1, other.id: 1}
    time.sleep(0.2)  # 0.4 s since the insert, 0.2 s since the renewal: still ours
    thief = book("b")
    assert thief.take_expired(["share-1"], 10) == []
    mine.lease = 0.0
    mine.renew_all()  # a lease of zero: lapsed at once
    taken = thief.take_expired(["share-1"], 1)
    assert len(taken) == 1
    assert set(mine.renew_all()) == {claim.id, other.id} - {taken[0].id}


def test_a_stale_owners_task_is_handed_to_a_claim_without_one(book):
    new_owner = book("b")
    new_owner.insert(KEY, "idx")
    assert new_owner.hand_over(KEY, "late-task", "vid") == "b"
    assert new_owner.get(KEY).task_id == "late-task"
    assert new_owner.hand_over(KEY, "second-task", None) is None  # never replaced


def test_a_finished_claim_reopens_only_after_a_lease(book):
    host = book("a", lease=0.3)
    claim = host.insert(KEY, "idx")
    host.record(claim, phase="done")
    assert host.reopen(claim.id) is False  # its owner may be moving the file right now
    time.sleep(0.4)
    assert host.reopen(claim.id) is True
    assert host.insert(KEY, "idx") is not None


def test_a_second_daemon_with_a_live_host_name_is_refused_not_the_same_one_restarting(book):
    first = book("a", lease=5)
    assert first.register("run-1", 1, "m1:/var/lib/a.db")
    second = book("a", lease=5)
    assert not second.register("run-2", 2, "m2:/var/lib/a.db")
    # The same daemon back after a crash (its state database's lock proves the old gone).
    assert second.register("run-3", 3, "m1:/var/lib/a.db")
    second.host_beat("run-3", "stopped", None)
    assert first.register("run-4", 4, "m2:/var/lib/b.db")


# -- settings --------------------------------------------------------------------------


def config_with(coordination: object, tmp_path: Path):
    raw = {"folders": [{"path": str(tmp_path), "index_id": "idx"}],
           "coordination": coordination}
    return parse_config(raw, base_dir=tmp_path, env={"HOME": str(tmp_path)})


def test_coordination_defaults_and_key_paths(tmp_path):
    settings = config_with({"dsn_file": "dsn", "host_name": "ingest-1"}, tmp_path).coordination
    assert settings == CoordinationConfig(dsn_file=tmp_path / "dsn", host_name="ingest-1")
    assert settings.heartbeat == 20.0
    assert config_with(None, tmp_path).coordination is None
    with pytest.raises(ConfigError) as caught:
        config_with({"backend": "redis", "lease_seconds": 10, "heartbeat_seconds": 8,
                     "schema": "Bad-Name", "colour": 1}, tmp_path)
    text = "\n".join(caught.value.errors)
    for key in ("coordination.backend", "coordination.heartbeat_seconds",
                "coordination.schema", "coordination.colour"):
        assert key in text


def test_the_dsn_comes_from_its_file_or_the_credential_directory(tmp_path):
    (tmp_path / "postgres-dsn").write_text("postgresql://u:secret@db/x\n")
    assert read_dsn(CoordinationConfig(), {"CREDENTIALS_DIRECTORY": str(tmp_path)}) == \
        "postgresql://u:secret@db/x"
    with pytest.raises(ConfigError, match=r"coordination\.dsn_file: required"):
        read_dsn(CoordinationConfig(), {})
    with pytest.raises(ConfigError, match="empty"):
        (tmp_path / "empty").write_text("\n")
        read_dsn(CoordinationConfig(dsn_file=tmp_path / "empty"), {})


def test_a_single_host_daemon_never_imports_the_driver():
    code = ("import sys, watcherd.service.daemon, watcherd.cli.main; "
            "sys.exit('psycopg' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


# -- the folder lock gives way, and mixing is refused ------------------------------------


def lock_for(tmp_path: Path, inbox: Path, name: str, coordinated: bool) -> InstanceLock:
    raw = {"state_db": str(tmp_path / name / "state.db"),
           "folders": [{"path": str(inbox), "index_id": "idx"}]}
    if coordinated:
        raw["coordination"] = {"dsn_file": "dsn", "host_name": name}
    return InstanceLock(parse_config(raw, base_dir=tmp_path, env={"HOME": str(tmp_path)}))


def test_coordinated_daemons_share_a_folder_and_lone_ones_are_refused_both_ways(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    first = lock_for(tmp_path, inbox, "a", True).acquire()
    second = lock_for(tmp_path, inbox, "b", True).acquire()  # no AlreadyRunning
    with pytest.raises(AlreadyRunning, match="coordinated watcherd daemons"):
        lock_for(tmp_path, inbox, "lone", False).acquire()
    share_id(inbox)  # the first coordinated start marks the folder
    first.release()
    second.release()
    with pytest.raises(AlreadyRunning, match="coordinated watcherd hosts"):
        lock_for(tmp_path, inbox, "lone", False).acquire()  # nobody runs, the marker says
    (inbox / CLUSTER_MARKER_NAME).unlink()
    lone = lock_for(tmp_path, inbox, "lone", False).acquire()
    with pytest.raises(AlreadyRunning, match="without coordination"):
        lock_for(tmp_path, inbox, "a", True).acquire()
    lone.release()


def test_a_lock_file_of_a_lone_daemon_on_another_host_refuses_a_coordinated_one(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / FOLDER_LOCK_NAME).write_text(json.dumps(
        {"pid": 4242, "state_db": "/var/lib/watcherd/state.db", "recursive": False,
         "host": "other-host"}))
    with pytest.raises(AlreadyRunning, match="on host other-host"):
        lock_for(tmp_path, inbox, "a", True).acquire()


def test_the_share_id_is_written_once_whoever_starts_first(tmp_path):
    ids = race(6, lambda n: share_id(tmp_path))
    assert len(set(ids)) == 1
    assert [p.name for p in tmp_path.iterdir()] == [CLUSTER_MARKER_NAME]


# -- the coordinator: fencing and the cluster-wide dedupe, with real local rows -------------


@pytest.fixture
def hosts(tmp_path, pg):
    """``hosts(name)``: a Coordinator and its own store for one daemon on one shared inbox."""
    inbox = tmp_path / "share"
    inbox.mkdir()
    made: list[tuple[Coordinator, Store]] = []

    def make(name: str, lease: float = 30) -> tuple[Coordinator, Store]:
        raw = {"state_db": str(tmp_path / name / "state.db"),
               "folders": [{"path": str(inbox), "index_id": "idx"}],
               "coordination": {"dsn_file": "dsn", "host_name": name, "lease_seconds": lease,
                                "schema": pg.schema}}
        config = parse_config(raw, base_dir=tmp_path, env={"HOME": str(tmp_path)})
        coordinator = Coordinator(config, pg.dsn)
        assert coordinator.start()
        store = Store(tmp_path / name / "state.db").open()
        made.append((coordinator, store))
        return made[-1]

    yield make
    for coordinator, store in made:
        coordinator.close()
        store.close()


def row(store: Store, inbox: Path, name: str) -> FileRecord:
    path = inbox / name
    if not path.exists():  # the same file seen by every host: one size and mtime
        path.write_bytes(b"x" * 10)
    st = path.stat()
    return store.add(path=str(path), folder=str(inbox), index_id="idx", state=State.QUEUED,
                     size=st.st_size, mtime_ns=st.st_mtime_ns)


def test_a_stale_owner_is_fenced_before_its_next_side_effect(hosts, tmp_path, pg):
    a, a_store = hosts("a")
    b, b_store = hosts("b")
    inbox = tmp_path / "share"
    mine = row(a_store, inbox, "clip.mp4")
    assert a.claim(mine).kind == "new"
    assert b.claim(row(b_store, inbox, "clip.mp4")).kind == "elsewhere"
    a.fence(mine, "the POST")  # still ours
    with pg.connect() as conn:  # a's lease runs out (it hung)
        conn.execute("UPDATE claims SET lease_until = now() - interval '1 second'")
    with b.lease_db.use() as book:
        (taken,) = book.take_expired(b.shares.ids(), 10)
    assert (taken.previous, taken.epoch) == ("a", 2)
    with pytest.raises(ClaimLost) as lost:
        a.fence(mine, "the move")
    assert lost.value.owner == "b"


def test_one_content_in_one_index_is_uploaded_by_one_host(hosts, tmp_path):
    a, a_store = hosts("a")
    b, b_store = hosts("b")
    inbox = tmp_path / "share"
    first, second = row(a_store, inbox, "one.mp4"), row(b_store, inbox, "two.mp4")
    assert a.claim(first).kind == "new" and b.claim(second).kind == "new"
    results = race(2, lambda n: (a, b)[n].begin_upload(
        (first, second)[n], sha256="f" * 64, index_id="idx", dedupe=True, started_at=1.0))
    assert sorted(how for how, _ in results) == ["join", "upload"]


def test_a_host_stopped_inside_a_transaction_holds_nobody_up_for_long(hosts, tmp_path, pg):
    """SIGSTOP can land between BEGIN and COMMIT: the server ends that transaction after a
    third of the lease, and no statement of another host waits longer than that."""
    a, a_store = hosts("a", lease=3)
    b, b_store = hosts("b", lease=3)
    inbox = tmp_path / "share"
    mine = row(a_store, inbox, "clip.mp4")
    claim = a.claim(mine).claim
    stopped = open_connection(pg.dsn, pg.schema, 3)
    try:
        stopped.execute("BEGIN")
        stopped.execute("UPDATE claims SET updated_at = now() WHERE id = %s", (claim.id,))
        started = time.monotonic()
        try:
            verdict = b.claim(row(b_store, inbox, "clip.mp4")).kind
        except CoordinationUnavailable:
            verdict = "waited for the lock, then gave up"
        assert time.monotonic() - started < 2.5, verdict
        time.sleep(1.2)
        assert b.claim(b_store.active_by_path(str(inbox / "clip.mp4"))).kind == "elsewhere"
        # The server ended the stopped one's session, which reconnects like after an outage.
        ended = (psycopg.OperationalError, psycopg.errors.IdleInTransactionSessionTimeout)
        with pytest.raises(ended):
            stopped.execute("COMMIT")
    finally:
        stopped.close()


def test_run_and_check_config_refuse_a_dsn_they_cannot_read(tmp_path):
    config = config_with({"dsn_file": "missing-dsn", "host_name": "a"}, tmp_path)
    env = {"TWELVELABS_API_KEY": "tlk_x"}
    with pytest.raises(ConfigError, match=r"coordination\.dsn_file: cannot read"):
        check_at_start(config, env)
    (tmp_path / "missing-dsn").write_text("postgresql://db/x\n")
    assert check_at_start(config, env).value == "tlk_x"
