"""Health for the watchdog, and the STATUS= line."""

from __future__ import annotations

import threading
import time
from typing import ClassVar

import pytest

from tests.conftest import FakeClock, wait_for
from watcherd.ingest.gate import UploadGate
from watcherd.ingest.progress import Progress
from watcherd.service.health import Monitor, status_line, thread_problems
from watcherd.state.states import State
from watcherd.state.store import Store
from watcherd.threads import ServiceThread, beat


class Blocker(ServiceThread):
    """Blocks in step() until released, beating only when told to."""

    def __init__(self, name: str = "blocker") -> None:
        super().__init__(name)
        self.release = threading.Event()
        self.beat_now = threading.Event()

    def step(self) -> None:
        while not self.release.wait(0.02):
            if self.beat_now.is_set():
                self.beat_now.clear()
                beat()

    def stop(self) -> None:
        super().stop()
        self.release.set()


class Dying(ServiceThread):
    def run(self) -> None:
        return  # ends at once, as a thread killed by a bug would


@pytest.fixture
def blocker():
    thread = Blocker()
    thread.start()
    yield thread
    thread.stop()
    thread.join(2)


def test_status_line_reads_like_the_issue_says():
    counts = {"indexing": 3, "done": 12, "failed": 1, "queued": 2, "settling": 1}
    line = status_line(counts, (2, 2), [("clip.mp4", 43)], None)
    assert line == "watching 2 folders; uploading clip.mp4 43%; 3 waiting; 3 indexing; " \
                   "12 done, 1 failed"
    assert status_line({}, (1, 1), [], None) == "watching 1 folder; 0 done, 0 failed"
    assert status_line({}, (1, 2), [], "paused: bad key").startswith(
        "watching 1 of 2 folders; uploads paused: bad key;")


def test_a_thread_without_progress_is_reported_with_where_it_is(blocker):
    assert thread_problems([blocker], stall_seconds=5) == []
    blocker.heartbeat -= 10
    [problem] = thread_problems([blocker], stall_seconds=5)
    assert problem.startswith("thread blocker has made no progress for 10s (limit 5s), at ")
    assert "test_health.py" in problem and "step()" in problem


def test_beat_inside_a_long_step_counts_as_progress(blocker):
    blocker.heartbeat -= 10
    blocker.beat_now.set()
    wait_for(lambda: not blocker.beat_now.is_set(), 2)
    assert thread_problems([blocker], stall_seconds=5) == []


def test_a_dead_thread_is_a_problem():
    thread = Dying("poller")
    thread.start()
    thread.join(2)
    assert thread_problems([thread], stall_seconds=5) == ["thread poller is dead"]


class RecordingNotifier:
    def __init__(self, interval: float | None) -> None:
        self.watchdog_interval = interval
        self.watchdog_enabled = interval is not None
        self.sent: list[str] = []

    def status(self, text: str) -> None:
        self.sent.append(f"STATUS={text}")

    def watchdog(self) -> None:
        self.sent.append("WATCHDOG=1")


class NoWatches:
    watches: ClassVar[list] = []

    def broken(self) -> list[str]:
        return []


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "state.db").open()
    yield store
    store.close()


def make_monitor(store, threads, interval=1.0):
    clock = FakeClock()
    notifier = RecordingNotifier(interval)
    progress = Progress()
    monitor = Monitor(notifier=notifier, store=store, progress=progress, gate=UploadGate(),
                      watcher=NoWatches(), threads=lambda: threads, stall_seconds=5,
                      clock=clock)
    return monitor, notifier, clock, progress


def test_monitor_pings_on_schedule_while_healthy_and_stops_when_stuck(store, blocker, caplog):
    monitor, notifier, clock, _ = make_monitor(store, [blocker])
    for _ in range(8):  # 4 s in 0.5 s turns
        blocker.heartbeat = time.monotonic()
        monitor.tick()
        clock.now += 0.5
    assert notifier.sent.count("WATCHDOG=1") == 4
    blocker.heartbeat -= 60
    for _ in range(8):
        monitor.tick()
        clock.now += 0.5
    assert notifier.sent.count("WATCHDOG=1") == 4
    critical = [r for r in caplog.records if r.levelname == "CRITICAL"]
    assert len(critical) == 1 and "withholding watchdog pings" in critical[0].message


def test_monitor_status_names_the_upload_with_its_percent(store):
    monitor, notifier, _, progress = make_monitor(store, [], interval=None)
    record = store.add(path="/in/видео.mp4", folder="/in", index_id="idx", size=10, mtime_ns=1)
    progress.update(record.id, 43, 100, record.path)
    monitor.tick()
    assert notifier.sent == ["STATUS=watching 0 folders; uploading видео.mp4 43%; 1 waiting; "
                             "0 done, 0 failed"]


def test_a_failing_status_query_never_stops_the_pings(store, blocker, caplog):
    monitor, notifier, clock, _ = make_monitor(store, [blocker])
    store.close()
    monitor.store = None  # every status query now fails
    for _ in range(4):
        blocker.heartbeat = time.monotonic()
        monitor.tick()
        clock.now += 0.5
    assert notifier.sent.count("WATCHDOG=1") == 2
    warnings = [r for r in caplog.records if "cannot update the status line" in r.message]
    assert len(warnings) == 1


def test_the_status_line_says_when_postgresql_holds_claiming_back(store):
    monitor, notifier, _, _ = make_monitor(store, [])
    down: list[str] = []
    monitor.coordination = lambda: down[0] if down else None
    assert "paused" not in monitor.summary()
    down.append("paused: PostgreSQL does not answer (connection refused), nothing new "
                "is claimed")
    monitor.tick()
    assert "uploads paused: PostgreSQL does not answer" in notifier.sent[-1]


def test_files_held_for_other_hosts_are_not_counted_as_waiting():
    counts = {State.SETTLING: 12, State.QUEUED: 3}
    line = status_line(counts, (1, 1), [], None, elsewhere=10)
    assert "5 waiting; 10 with other hosts" in line
