"""End to end under faults: the real daemon against the fake API when things go wrong.

Duplicate content, a bad index at start, quota, a second daemon, a corrupt
database, a folder that goes away, and a full done filesystem. A refused key
(a pause, not an exit) is in test_pauses_e2e.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import wait_for
from watcherd.ingest.mover import TEMP_PREFIX


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_copies_of_one_content_are_uploaded_once_and_all_end_in_done(daemon, fake_api,
                                                                     valid_clip):
    fake_api.set_progression((("indexing", 0.0), ("ready", 1.5)))
    elsewhere = daemon.root / "other-index-folder"
    elsewhere.mkdir()
    daemon.settings["folders"].append({"path": str(elsewhere), "index_id": "idx_test",
                                       "dedupe": False})
    daemon.start()
    shutil.copy(valid_clip, daemon.inbox / "original.mp4")
    wait_for(lambda: fake_api.uploads(), what="the first upload")
    shutil.copy(valid_clip, daemon.inbox / "copy-while-indexing.mp4")
    first = daemon.sidecar(daemon.wait_done("original.mp4"))
    shutil.copy(valid_clip, daemon.inbox / "copy-after-done.mp4")
    shutil.copy(valid_clip, elsewhere / "dedupe-off.mp4")
    for name in ("copy-while-indexing.mp4", "copy-after-done.mp4"):
        side = daemon.sidecar(daemon.wait_done(name))
        assert side["status"] == "ready" and side["attempts"] == 0
        assert (side["task_id"], side["video_id"]) == (first["task_id"], first["video_id"])
        assert side["duplicate_of"]["source_path"] == str(daemon.inbox / "original.mp4")
        assert side["sha256"] == first["sha256"]
    wait_for((elsewhere / "done" / "dedupe-off.mp4.json").exists, what="dedupe-off done")
    assert len(fake_api.uploads()) == 2  # the original, and the folder with dedupe off
    assert "not uploaded again" in daemon.log()


def test_a_file_moved_back_from_failed_is_a_fresh_attempt(daemon, fake_api, valid_clip):
    fake_api.fail_filenames(["again.mp4"], "the fake says no")
    daemon.start()
    shutil.copy(valid_clip, daemon.inbox / "again.mp4")
    failed = daemon.wait_done("again.mp4", "failed")
    assert daemon.sidecar(failed)["attempts"] == 1
    fake_api.stop_failing(["again.mp4"])
    failed.with_name("again.mp4.json").unlink()
    os.rename(failed, daemon.inbox / "again.mp4")
    side = daemon.sidecar(daemon.wait_done("again.mp4"))
    assert side["status"] == "ready" and side["attempts"] == 1
    assert len(fake_api.uploads()) == 2


def run_once(daemon, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "watcherd", "run", "-c",
                           str(daemon.write_config()), *extra], capture_output=True,
                          text=True, env=daemon.env, timeout=60)


def test_an_unknown_index_at_start_names_the_folder(daemon, fake_api):
    daemon.settings["folders"][0]["index_id"] = "idx_typo"
    result = run_once(daemon)
    assert result.returncode == 78, result.stderr
    assert "folders[0].index_id: index idx_typo cannot be used" in result.stderr
    assert "resource_not_exist" in result.stderr


def test_an_api_that_does_not_answer_the_start_check_does_not_hold_up_start(daemon, fake_api,
                                                                           valid_clip):
    # Under systemd, READY=1 waits for start: a hung check must not run into TimeoutStartSec.
    daemon.settings["api"]["io_timeout_seconds"] = 300
    fake_api.inject("GET", "/indexes/", action="late", delay=60)
    started = time.monotonic()
    daemon.start()
    assert time.monotonic() - started < 20
    assert "cannot check index idx_test at start" in daemon.log()
    shutil.copy(valid_clip, daemon.inbox / "after.mp4")
    daemon.wait_done("after.mp4")
    assert daemon.stop() == 0


def test_an_unwritable_failed_dir_is_refused_at_start(daemon, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a folder should be")
    daemon.settings["folders"][0]["failed_dir"] = str(blocker / "failed")
    result = run_once(daemon)
    assert result.returncode == 78 and "folders[0].failed_dir" in result.stderr


def test_a_second_daemon_on_the_same_database_refuses_to_start(daemon, fake_api, valid_clip):
    daemon.start()
    result = run_once(daemon)
    assert result.returncode == 1
    assert f"pid {daemon.proc.pid}" in result.stderr and "already using" in result.stderr
    shutil.copy(valid_clip, daemon.inbox / "still-works.mp4")
    daemon.wait_done("still-works.mp4")
    assert len(fake_api.uploads()) == 1


def test_quota_exhausted_pauses_uploads_then_resumes_by_itself(daemon, fake_api, valid_clip):
    fake_api.inject("POST", "/tasks", status=400, times=2, body={
        "code": "usage_limit_exceeded", "message": "Not enough free credit."})
    daemon.settings["pause_check_seconds"] = 0.2  # quota is re-tried 10x less often: 2 s
    daemon.start()
    shutil.copy(valid_clip, daemon.inbox / "credit.mp4")
    wait_for(lambda: "uploads paused" in daemon.log(), what="quota pause")
    assert (daemon.inbox / "credit.mp4").exists() and not list(daemon.failed.iterdir())
    side = daemon.sidecar(daemon.wait_done("credit.mp4", timeout=30))
    assert side["status"] == "ready" and len(fake_api.tasks) == 1
    assert "usage_limit_exceeded" in daemon.log() and "account has credit" in daemon.log()


def test_a_corrupt_database_is_moved_aside_and_rebuilt_without_reuploading(daemon, fake_api,
                                                                            distinct_clips):
    done_clip, indexing_clip, new_clip = distinct_clips(3)
    fake_api.set_progression((("indexing", 0.0), ("ready", 0.5)))
    daemon.start()
    shutil.copy(done_clip, daemon.inbox / "finished.mp4")
    daemon.wait_done("finished.mp4")
    fake_api.set_progression((("indexing", 0.0), ("ready", 600.0)))
    shutil.copy(indexing_clip, daemon.inbox / "in-flight.mp4")
    wait_for(lambda: len(fake_api.uploads()) == 2, what="the second upload")
    assert daemon.stop(signal.SIGKILL) == -signal.SIGKILL
    db = Path(daemon.settings["state_db"])
    db.write_bytes(b"this is not a database" * 100)
    Path(f"{db}-wal").unlink(missing_ok=True)
    fake_api.set_progression((("indexing", 0.0), ("ready", 0.5)))
    shutil.copy(done_clip, daemon.inbox / "copy-of-finished.mp4")
    shutil.copy(new_clip, daemon.inbox / "new.mp4")
    daemon.start()
    for name in ("in-flight.mp4", "copy-of-finished.mp4", "new.mp4"):
        daemon.wait_done(name)
    assert "state database" in daemon.log() and "is damaged" in daemon.log()
    assert list(db.parent.glob("state.db.corrupt-*"))
    assert len(fake_api.tasks) == 3  # finished, in-flight (adopted), new
    assert "adopted the task an earlier attempt created" in daemon.log()
    rows = {Path(r["path"]).name: r for r in daemon.status()}
    assert rows["finished.mp4"]["state"] == "done"
    assert rows["copy-of-finished.mp4"]["task_id"] == rows["finished.mp4"]["task_id"]


def test_a_folder_that_goes_away_keeps_its_files_and_is_watched_again(daemon, fake_api,
                                                                      distinct_clips):
    """Like a share unmounting under a file that is still settling."""
    first, second = distinct_clips(2)
    daemon.settings["settle_seconds"] = 3
    daemon.start()
    shutil.copy(first, daemon.inbox / "before.mp4")
    daemon.wait_done("before.mp4")
    shutil.copy(second, daemon.inbox / "on-share.mp4")
    wait_for(lambda: any(r["path"].endswith("on-share.mp4") for r in daemon.status()),
             what="on-share.mp4 to be tracked")
    aside = daemon.root / "unmounted"
    os.rename(daemon.inbox, aside)
    wait_for(lambda: "re-establishing the watch" in daemon.log(), timeout=15,
             what="the lost watch to be noticed")
    time.sleep(1.0)
    (row,) = [r for r in daemon.status() if r["path"].endswith("on-share.mp4")]
    assert row["state"] == "settling"  # not vanished: its folder is away, not the file
    os.rename(aside, daemon.inbox)
    daemon.wait_done("on-share.mp4", timeout=30)
    wait_for(lambda: "watching again" in daemon.log(), timeout=15, what="the watch to return")
    assert len(fake_api.uploads()) == 2


@pytest.fixture
def tiny_tmpfs(tmp_path):
    mount = tmp_path / "donefs"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip()}); "
                    "test_mover covers ENOSPC by simulation")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def test_a_full_done_filesystem_loses_nothing_and_recovers(daemon, fake_api, valid_clip,
                                                           tiny_tmpfs):
    daemon.settings["folders"][0]["done_dir"] = str(tiny_tmpfs / "done")
    daemon.start()
    assert "on another filesystem" in daemon.log()
    filler = tiny_tmpfs / "filler"
    with open(filler, "wb", buffering=0) as fh:  # leave less room than the clip needs
        try:
            while fh.write(b"\0" * 4096):
                pass
        except OSError:
            pass
    source = daemon.inbox / "big.mp4"
    shutil.copy(valid_clip, source)
    wait_for(lambda: "cannot move it to done/failed yet" in daemon.log(), timeout=20,
             what="the ENOSPC to be reported")
    assert "No space left on device" in daemon.log()
    assert source.read_bytes() == valid_clip.read_bytes()
    assert not [n for n in files_under(tiny_tmpfs) if TEMP_PREFIX in n]
    filler.unlink()
    moved = tiny_tmpfs / "done" / "big.mp4"
    wait_for(moved.with_name("big.mp4.json").exists, timeout=30, what="the retried move")
    assert moved.read_bytes() == valid_clip.read_bytes() and not source.exists()
    assert len(fake_api.tasks) == 1
