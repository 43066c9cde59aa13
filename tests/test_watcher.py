"""Detection: handlers only enqueue the right path; scans find what events missed."""

from __future__ import annotations

import errno
import queue
import time
from pathlib import Path

import pytest
from watchdog.events import (
    DirCreatedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileClosedNoWriteEvent,
    FileCreatedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileOpenedEvent,
)

import watcherd.intake.watcher as watcher_module
from watcherd.config import parse_config
from watcherd.intake.watcher import FolderWatch, HintingHandler, Scanner, Watcher, scan_folder


def config_for(path: Path, **folder):
    return parse_config({"rescan_interval_seconds": 0.2,
                         "folders": [{"path": str(path), "index_id": "idx", **folder}]},
                        base_dir=path, env={})


def test_handler_enqueues_candidate_events_and_uses_the_move_destination():
    intake: queue.SimpleQueue = queue.SimpleQueue()
    handler = HintingHandler(intake)
    for event in (FileCreatedEvent("/in/a.mp4"), FileModifiedEvent("/in/b.mp4"),
                  FileClosedEvent("/in/c.mp4"), FileMovedEvent("/in/d.mp4.part", "/in/d.mp4"),
                  FileOpenedEvent("/in/x.mp4"), FileClosedNoWriteEvent("/in/x.mp4"),
                  FileAttribEvent("/in/x.mp4"), DirCreatedEvent("/in/sub")):
        handler.dispatch(event)
    hints = []
    while not intake.empty():
        hints.append(intake.get().path)
    assert hints == ["/in/a.mp4", "/in/b.mp4", "/in/c.mp4", "/in/d.mp4"]


def test_scan_skips_done_failed_hidden_and_ignored_names(tmp_path):
    for rel in ("a.mp4", "b.MOV", "c.mp4.part", "notes.txt", ".h.mp4", "sub/d.mp4",
                "done/e.mp4", "failed/f.mp4", ".cache/g.mp4"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    flat = sorted(Path(p).name for p in scan_folder(config_for(tmp_path).folders[0]))
    assert flat == ["a.mp4", "b.MOV"]
    deep = sorted(Path(p).relative_to(tmp_path).as_posix()
                  for p in scan_folder(config_for(tmp_path, recursive=True).folders[0]))
    assert deep == ["a.mp4", "b.MOV", "sub/d.mp4"]


def test_scanner_rescans_every_folder_periodically(tmp_path):
    intake: queue.SimpleQueue = queue.SimpleQueue()
    scanner = Scanner(config_for(tmp_path), intake)
    scanner.start()
    try:
        (tmp_path / "missed.mp4").write_bytes(b"x")  # no observer: only a rescan can see it
        deadline = time.monotonic() + 5
        while intake.empty() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert intake.get_nowait().path == str(tmp_path / "missed.mp4")
    finally:
        scanner.stop()
        scanner.join(5)


def test_a_missing_folder_is_reported_and_watched_once_it_appears(tmp_path, caplog):
    inbox = tmp_path / "later"
    watch = FolderWatch(config_for(inbox).folders[0], queue.SimpleQueue(), poll_seconds=1)
    assert not watch.start() and not watch.healthy
    assert "does not exist" in caplog.text
    inbox.mkdir()
    try:
        assert watch.start() and watch.healthy
    finally:
        watch.stop()


def _wait(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not predicate():
        time.sleep(0.05)
    return predicate()


def test_a_removed_folder_is_noticed_rewatched_on_return_and_rescanned(tmp_path, caplog):
    """inotify's watch dies with the directory; the observer thread does not."""
    caplog.set_level("INFO", logger="watcherd.intake.watcher")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    config = config_for(inbox)
    intake: queue.SimpleQueue = queue.SimpleQueue()
    scanner = Scanner(config, intake)
    watcher = Watcher(config, intake, scanner)
    watcher.start()
    try:
        (watch,) = watcher.watches
        assert watch.healthy
        inbox.rename(tmp_path / "unmounted")
        assert _wait(lambda: watch.problem() is not None)
        watcher.ensure_running()  # the folder is away: reported, retried later
        assert "re-establishing the watch" in caplog.text and not watch.healthy
        inbox.mkdir()
        (inbox / "back.mp4").write_bytes(b"x")
        watcher.ensure_running()
        assert watch.healthy and "watching again" in caplog.text
        scanner.step()  # the rescan requested on return finds what no event reported
        paths = []
        while not intake.empty():
            paths.append(intake.get().path)
        assert str(inbox / "back.mp4") in paths
    finally:
        watcher.stop()


@pytest.mark.parametrize("limit", ["watches (schedule)", "instances (constructor)"])
def test_inotify_limits_fall_back_to_polling_and_name_the_sysctl(tmp_path, caplog,
                                                                monkeypatch, limit):
    from watchdog.observers import Observer

    def no_watches_left(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "inotify watch limit reached")

    def no_instances_left():
        raise OSError(errno.EMFILE, "Too many open files")

    if limit.startswith("watches"):
        monkeypatch.setattr(Observer, "schedule", no_watches_left)
    else:
        monkeypatch.setattr(watcher_module, "Observer", no_instances_left)
    watch = FolderWatch(config_for(tmp_path).folders[0], queue.SimpleQueue(), poll_seconds=1)
    try:
        assert watch.start() and watch.healthy and watch.mode == "polling"
    finally:
        watch.stop()
    assert "fs.inotify.max_user_watches" in caplog.text


def test_a_rescan_waits_until_the_previous_one_was_taken_in(tmp_path):
    """Rescans faster than the settler must not pile up hints without bound."""
    for n in range(30):
        (tmp_path / f"f{n:02d}.mp4").write_bytes(b"x")
    intake: queue.SimpleQueue = queue.SimpleQueue()
    scanner = Scanner(config_for(tmp_path), intake)  # rescans every 0.2 s
    scanner.start()
    try:
        assert _wait(lambda: intake.qsize() >= 30)
        time.sleep(1.5)  # about seven rescan intervals with nobody taking hints in
        assert intake.qsize() == 30
        while not intake.empty():  # as the settler does with each hint it offered
            hint = intake.get_nowait()
            hint.batch.offered()
        assert _wait(lambda: intake.qsize() >= 30)  # and rescans resume
    finally:
        scanner.stop()
        scanner.join(5)
