"""End to end: the real daemon, real temp folders, the fake Twelve Labs API."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import TEST_KEY, wait_for
from watcherd.simulator.clips import (
    make_audio_only,
    make_truncated,
    make_video,
    write_text_as_video,
)
from watcherd.state.instance import FOLDER_LOCK_NAME


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_valid_file_goes_to_done_with_a_complete_sidecar(daemon, fake_api, valid_clip):
    daemon.start()
    source = daemon.inbox / "interview.mp4"
    shutil.copy(valid_clip, source)
    moved = daemon.wait_done("interview.mp4")
    (upload,) = fake_api.uploads()
    side = daemon.sidecar(moved)
    assert side["status"] == "ready" and side["reason"] is None
    assert side["task_id"] == upload.task_id
    assert side["video_id"] == fake_api.tasks[upload.task_id]["video_id"]
    assert side["index_id"] == "idx_test"
    assert side["source_path"] == str(source)
    assert side["size"] == valid_clip.stat().st_size == upload.file.size
    assert side["sha256"] == sha256(valid_clip) == upload.file.sha256
    assert side["task"]["status"] == "ready" and side["task"]["_id"] == upload.task_id
    assert side["media"]["width"] == 640
    assert all(side["timestamps"][k] for k in ("discovered_at", "settled_at", "uploaded_at",
                                                "finished_at"))
    meta = json.loads(upload.fields["user_metadata"])
    assert meta["sha256"] == side["sha256"] and meta["source_path"] == str(source)
    assert "language" not in upload.fields
    assert not source.exists() and moved.read_bytes() == valid_clip.read_bytes()
    (row,) = daemon.status()
    assert (row["state"], row["task_id"], row["video_id"]) == ("done", upload.task_id,
                                                               side["video_id"])
    log = daemon.log()
    assert f"{source}: uploading -> indexing task={upload.task_id}" in log
    assert TEST_KEY not in json.dumps(side)


def test_every_invalid_kind_goes_to_failed_with_its_reason_and_no_upload(daemon, fake_api,
                                                                         clip_dir, valid_clip):
    strict = daemon.root / "strict"
    strict.mkdir()
    daemon.settings["folders"].append({"path": str(strict), "index_id": "idx_test",
                                       "require_audio": True})
    daemon.start()
    bad = {
        "short.mp4": ("duration", make_video(clip_dir / "short.mp4", seconds=3)),
        "small.mp4": ("resolution", make_video(clip_dir / "small.mp4", width=320, height=240)),
        "audio-only.mp4": ("decodable", make_audio_only(clip_dir / "audio-only.mp4")),
        "text.mp4": ("decodable", write_text_as_video(clip_dir / "text.mp4")),
        "truncated.mp4": ("complete", make_truncated(
            make_video(clip_dir / "fast.mp4", faststart=True), clip_dir / "truncated.mp4")),
    }
    (clip_dir / "empty.mp4").write_bytes(b"")
    bad["empty.mp4"] = ("size", clip_dir / "empty.mp4")
    for name, (_, path) in bad.items():
        shutil.copy(path, daemon.inbox / name)
    shutil.copy(make_video(clip_dir / "silent.mp4", audio=False), strict / "silent.mp4")
    for name, (rule, _) in bad.items():
        side = daemon.sidecar(daemon.wait_done(name, "failed"))
        assert side["status"] == "failed" and side["rule"] == rule, (name, side)
        assert side["reason"] and side["task_id"] is None, side
    silent = strict / "failed" / "silent.mp4"
    wait_for(silent.with_name("silent.mp4.json").exists, what="silent.mp4 in failed/")
    side = daemon.sidecar(silent)
    assert side["rule"] == "audio" and "audio" in side["reason"]
    assert fake_api.count("POST", "/tasks") == 0
    assert "duration 3" in daemon.sidecar(daemon.failed / "short.mp4")["reason"]


def test_slow_writer_is_uploaded_exactly_once_and_whole(daemon, fake_api, valid_clip):
    daemon.settings["settle_seconds"] = 1.0
    daemon.start()
    data = valid_clip.read_bytes()
    target = daemon.inbox / "slow.mp4"
    with open(target, "wb") as fh:  # pauses shorter than settle_seconds between writes
        for offset in range(0, len(data), 2048):
            fh.write(data[offset:offset + 2048])
            fh.flush()
            time.sleep(0.6 if offset % (8 * 2048) == 0 else 0.01)
    moved = daemon.wait_done("slow.mp4")
    (upload,) = fake_api.uploads()
    assert upload.file.size == len(data) and upload.file.sha256 == hashlib.sha256(data).hexdigest()
    assert daemon.sidecar(moved)["sha256"] == upload.file.sha256


def test_remote_failure_goes_to_failed_with_the_apis_error_reason(daemon, fake_api, valid_clip):
    fake_api.fail_filenames(["doomed.mp4"], error_reason="The video could not be indexed.")
    daemon.start()
    shutil.copy(valid_clip, daemon.inbox / "doomed.mp4")
    side = daemon.sidecar(daemon.wait_done("doomed.mp4", "failed"))
    assert side["status"] == "failed" and side["task_id"]
    assert "The video could not be indexed." in side["reason"]
    assert side["task"]["error_reason"] == "The video could not be indexed."


def test_name_collision_in_done_gets_a_distinct_suffix(daemon, valid_clip):
    daemon.done.mkdir()
    (daemon.done / "clip.mp4").write_bytes(b"an earlier clip")
    daemon.start()
    shutil.copy(valid_clip, daemon.inbox / "clip.mp4")
    moved = daemon.wait_done("clip-1.mp4")
    assert (daemon.done / "clip.mp4").read_bytes() == b"an earlier clip"
    assert daemon.sidecar(moved)["status"] == "ready"


def test_moved_in_file_and_file_present_before_start_are_both_taken(daemon, fake_api,
                                                                    distinct_clips):
    first, second = distinct_clips(2)
    shutil.copy(first, daemon.inbox / "early.mp4")
    daemon.start()
    outside = daemon.root / "staging.mp4"
    shutil.copy(second, outside)
    os.rename(outside, daemon.inbox / "moved-in.mp4")
    daemon.wait_done("early.mp4")
    daemon.wait_done("moved-in.mp4")
    assert sorted(u.file.filename for u in fake_api.uploads()) == ["early.mp4", "moved-in.mp4"]


def test_ignored_names_are_left_untouched(daemon, fake_api, valid_clip):
    ignored = ["clip.mp4.part", ".hidden.mp4", "notes.txt", "~$owner.mp4", "backup.mp4~",
               "clip.mp4.crdownload"]
    for name in ignored:
        shutil.copy(valid_clip, daemon.inbox / name)
    daemon.start()
    shutil.copy(valid_clip, daemon.inbox / "real.mp4")
    daemon.wait_done("real.mp4")
    time.sleep(1.0)  # a full settle period more: still nothing else happens
    for name in ignored:
        assert (daemon.inbox / name).read_bytes() == valid_clip.read_bytes()
    assert [u.file.filename for u in fake_api.uploads()] == ["real.mp4"]
    assert [r["path"] for r in daemon.status()] == [str(daemon.inbox / "real.mp4")]


def test_partial_download_renamed_to_its_final_name_is_taken(daemon, fake_api, valid_clip):
    daemon.start()
    partial = daemon.inbox / "download.mp4.part"
    shutil.copy(valid_clip, partial)
    time.sleep(0.8)
    assert fake_api.count("POST", "/tasks") == 0
    os.rename(partial, daemon.inbox / "download.mp4")
    daemon.wait_done("download.mp4")


def test_api_rejection_fails_the_file_with_the_apis_code(daemon, fake_api, valid_clip):
    fake_api.inject("POST", "/tasks", status=400, body={
        "code": "video_resolution_too_low", "message": "The resolution is too low."})
    daemon.start()
    shutil.copy(valid_clip, daemon.inbox / "low.mp4")
    side = daemon.sidecar(daemon.wait_done("low.mp4", "failed"))
    assert side["error_code"] == "video_resolution_too_low"
    assert "The resolution is too low." in side["reason"] and side["task_id"] is None


def test_transient_errors_are_retried_and_create_exactly_one_task(daemon, fake_api, valid_clip):
    fake_api.inject("POST", "/tasks", status=500, body="<html>oops</html>")
    fake_api.inject("POST", "/tasks", status=429, body=None, headers={"Retry-After": "1"})
    fake_api.inject("GET", "/tasks/", status=503, body=None)
    daemon.start()
    shutil.copy(valid_clip, daemon.inbox / "flaky.mp4")
    side = daemon.sidecar(daemon.wait_done("flaky.mp4", timeout=30))
    assert side["status"] == "ready" and side["attempts"] == 3
    assert len(fake_api.uploads()) == 1 and len(fake_api.tasks) == 1


def test_task_created_but_answer_lost_is_adopted_not_uploaded_twice(daemon, fake_api,
                                                                    valid_clip):
    fake_api.inject("POST", "/tasks", action="create_then_reset")
    daemon.start()
    shutil.copy(valid_clip, daemon.inbox / "lost-answer.mp4")
    side = daemon.sidecar(daemon.wait_done("lost-answer.mp4", timeout=30))
    assert len(fake_api.tasks) == 1
    assert side["task_id"] == next(iter(fake_api.tasks))
    assert "adopted the task" in daemon.log()


def test_a_key_revoked_while_running_pauses_uploads_then_they_resume(daemon, fake_api,
                                                                     valid_clip):
    key_file = daemon.root / "api-key"
    key_file.write_text(TEST_KEY + "\n")
    key_file.chmod(0o600)
    daemon.settings["api"]["key_file"] = str(key_file)
    daemon.start()
    fake_api.api_key = "tlk_rotated_key_0123456789"  # the old key stops working
    shutil.copy(valid_clip, daemon.inbox / "waiting.mp4")
    wait_for(lambda: "uploads paused" in daemon.log(), what="pause")
    time.sleep(1.0)
    assert (daemon.inbox / "waiting.mp4").exists() and not list(daemon.failed.iterdir())
    assert fake_api.tasks == {}
    assert "api_key_invalid" in daemon.log() and "Fix:" in daemon.log()
    key_file.write_text(fake_api.api_key + "\n")  # the operator puts in the new key
    daemon.wait_done("waiting.mp4", timeout=20)
    assert "resuming uploads" in daemon.log() and len(fake_api.tasks) == 1
    assert "tlk_rotated_key_0123456789" not in daemon.log()


def test_restart_resumes_polling_without_uploading_again(daemon, fake_api, valid_clip):
    fake_api.set_progression((("validating", 0.0), ("indexing", 0.2), ("ready", 4.0)))
    daemon.start()
    shutil.copy(valid_clip, daemon.inbox / "long.mp4")
    wait_for(lambda: fake_api.uploads(), what="upload")
    assert daemon.stop() == 0
    assert (daemon.inbox / "long.mp4").exists()
    daemon.start()
    daemon.wait_done("long.mp4", timeout=20)
    assert len(fake_api.uploads()) == 1


def test_v12_task_shape_and_language_field(tmp_path, valid_clip):
    from tests.conftest import DaemonRunner
    from watcherd.simulator import FakeTwelveLabs

    with FakeTwelveLabs(api_key=TEST_KEY, api_version="v1.2") as api:
        runner = DaemonRunner(tmp_path, api)
        runner.settings["folders"][0]["language"] = "en"
        runner.start()
        try:
            shutil.copy(valid_clip, runner.inbox / "old-api.mp4")
            side = runner.sidecar(runner.wait_done("old-api.mp4"))
        finally:
            assert runner.stop() == 0
    assert api.uploads()[0].fields["language"] == "en"
    assert side["status"] == "ready" and "metadata" in side["task"]


def test_many_files_at_once_each_uploaded_exactly_once(daemon, fake_api, distinct_clips):
    daemon.settings["upload_workers"] = 2
    daemon.start()
    names = [f"burst-{n:02d}.mp4" for n in range(12)]
    threads = [threading.Thread(target=shutil.copy, args=(clip, daemon.inbox / n))
               for clip, n in zip(distinct_clips(12), names, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name in names:
        daemon.wait_done(name, timeout=30)
    assert sorted(u.file.filename for u in fake_api.uploads()) == names
    # Nothing left in the inbox but the running daemon's lock (removed when it stops).
    assert sorted(os.listdir(daemon.inbox)) == [FOLDER_LOCK_NAME, "done", "failed"]


def test_polling_folder_and_recursive_layout(daemon, fake_api, valid_clip):
    """A polling observer (for NFS/SMB) sees files; a recursive folder keeps its layout."""
    share = daemon.root / "share"
    (share / "cam-a").mkdir(parents=True)
    daemon.settings["folders"] = [{"path": str(share), "index_id": "idx_test", "polling": True,
                                   "recursive": True}]
    daemon.settings["rescan_interval_seconds"] = 60  # the observer, not a scan, must find it
    daemon.start()
    time.sleep(0.3)
    shutil.copy(valid_clip, share / "cam-a" / "take1.mp4")
    moved = share / "done" / "cam-a" / "take1.mp4"
    wait_for(moved.with_name("take1.mp4.json").exists, timeout=20,
             what=lambda: daemon.log()[-3000:])
    assert daemon.sidecar(moved)["source_path"] == str(share / "cam-a" / "take1.mp4")
    assert [u.file.filename for u in fake_api.uploads()] == ["take1.mp4"]


def test_sigint_stops_the_daemon_cleanly(daemon):
    daemon.start()
    assert daemon.stop(signal.SIGINT) == 0
    assert "received SIGINT; shutting down" in daemon.log()
    assert "watcherd stopped" in daemon.log()


def test_done_dir_on_another_filesystem(daemon, valid_clip):
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == daemon.root.stat().st_dev:
        pytest.skip("no second filesystem here")
    done = shm / f"watcherd-e2e-{os.getpid()}-{time.monotonic_ns()}"
    daemon.settings["folders"][0]["done_dir"] = str(done)
    try:
        daemon.start()
        shutil.copy(valid_clip, daemon.inbox / "far.mp4")
        sidecar = done / "far.mp4.json"
        wait_for(sidecar.exists, timeout=20, what=lambda: daemon.log()[-3000:])
        assert (done / "far.mp4").read_bytes() == valid_clip.read_bytes()
        assert sorted(p.name for p in done.iterdir()) == ["far.mp4", "far.mp4.json"]
        assert not (daemon.inbox / "far.mp4").exists()
    finally:
        shutil.rmtree(done, ignore_errors=True)


def test_killed_while_the_answer_was_on_its_way_adopts_the_task_on_restart(daemon, fake_api,
                                                                          valid_clip):
    """SIGKILL after the API created the task but before we heard back: no second upload."""
    fake_api.inject("POST", "/tasks", action="create_then_reset", delay=30)
    daemon.start()
    shutil.copy(valid_clip, daemon.inbox / "kill.mp4")
    wait_for(lambda: fake_api.tasks, what="the task to be created")
    assert daemon.stop(signal.SIGKILL) == -signal.SIGKILL
    daemon.start()
    side = daemon.sidecar(daemon.wait_done("kill.mp4", timeout=30))
    # A second POST would have created a second task.
    assert len(fake_api.tasks) == 1 and side["task_id"] == next(iter(fake_api.tasks))
    assert "restart: settling again" in daemon.log()
    assert "adopted the task an earlier attempt created" in daemon.log()


def test_non_ascii_and_spaced_names_survive_the_whole_trip(daemon, fake_api, valid_clip):
    name = "интервью 2026 — café.mp4"
    daemon.start()
    shutil.copy(valid_clip, daemon.inbox / name)
    side = daemon.sidecar(daemon.wait_done(name))
    assert fake_api.uploads()[0].file.filename == name
    assert side["source_path"].endswith(name) and side["status"] == "ready"


def test_the_daemon_prunes_old_history_and_marks_a_clean_stop(daemon):
    """Retention runs in the daemon; a SIGTERM stop lets the next start skip the full check,
    a SIGKILL does not."""
    import sqlite3

    from watcherd.state.states import State
    from watcherd.state.store import Store

    db = Path(daemon.settings["state_db"])
    old = time.time() - 200 * 86400
    store = Store(db, clock=lambda: old).open()
    gone = store.add(path=f"{daemon.inbox}/gone.mp4", folder=str(daemon.inbox), index_id="idx")
    store.transition(gone.id, State.VANISHED, "deleted before it settled")
    store.close()
    daemon.settings["history_retention_days"] = 90
    daemon.start()

    def rows() -> int:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            return conn.execute("SELECT COUNT(*) FROM files").fetchone()[0]

    wait_for(lambda: rows() == 0, what="retention to forget the 200-day-old row")
    assert daemon.stop() == 0

    def clean_mark() -> str | None:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'closed_cleanly'").fetchone()
        return row[0] if row else None

    assert clean_mark() == "1"
    daemon.start()
    wait_for(lambda: clean_mark() is None, what="the start to use up the mark")
    # The mark is used up when the store opens, before the start is logged.
    wait_for(lambda: daemon.log().count("watcherd started") == 2, what="the second start")
    assert daemon.stop(signal.SIGKILL) == -signal.SIGKILL
    assert clean_mark() is None  # a killed daemon leaves no mark: the next start checks
    daemon.start()
    wait_for(lambda: daemon.log().count("watcherd started") == 3, what="the third start")
