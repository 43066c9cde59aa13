"""Adoption only with proof, end to end: the real daemon, the fake API, real temp folders.

A task found after an unanswered upload is taken for the file's only when its video
carries the file's sha256; a same name in the same minutes proves nothing. A reload that
changes a folder's index sends files not yet uploaded to the new one, and every record
names the index the task was really created in.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import DaemonRunner, wait_for
from watcherd.simulator import FakeTwelveLabs

pytestmark = pytest.mark.timeout(120)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sidecars(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(folder.rglob("*.json"))]


def wait_sidecars(daemon: DaemonRunner, count: int, timeout: float = 40.0
                  ) -> list[dict[str, Any]]:
    wait_for(lambda: len(list(daemon.done.rglob("*.json"))) >= count, timeout,
             lambda: f"{count} sidecars in done/ (log:\n{daemon.log()[-4000:]})")
    return sidecars(daemon.done)


def wait_done_at(daemon: DaemonRunner, relative: str, timeout: float = 40.0) -> dict[str, Any]:
    """The sidecar of ``relative`` (which may be in a subfolder) once it is in done/."""
    sidecar = daemon.done / f"{relative}.json"
    wait_for(sidecar.exists, timeout, lambda: f"{sidecar} (log:\n{daemon.log()[-4000:]})")
    return json.loads(sidecar.read_text())


def task_of(fake: FakeTwelveLabs, content: Path) -> dict[str, Any]:
    """The one task the API holds for this content."""
    (task,) = [t for t in fake.tasks.values() if t["sha256"] == sha256(content)]
    return task


def lookups(fake: FakeTwelveLabs) -> list[str]:
    """Filenames looked for with ``GET /tasks?filename=``: adoption lookups, nothing else."""
    return [r.query["filename"][0] for r in fake.requests
            if r.method == "GET" and "filename" in r.query and fake._relative(r.path) == "/tasks"]


def test_a_500_does_not_adopt_an_earlier_different_recording_of_the_same_name(
        daemon, fake_api, distinct_clips):
    earlier, recording = distinct_clips(2)
    daemon.start()
    shutil.copy(earlier, daemon.inbox / "rec.mp4")
    daemon.wait_done("rec.mp4")
    # Answered before the body was read, so no task exists; this client cannot know that.
    fake_api.inject("POST", "/tasks", status=500, body="<html>oops</html>", action="early")
    shutil.copy(recording, daemon.inbox / "rec.mp4")
    first, second = sorted(wait_sidecars(daemon, 2), key=lambda s: s["sha256"] == sha256(
        recording))
    # Its own content was uploaded and indexed; the sidecar names its own task.
    assert second["task_id"] == task_of(fake_api, recording)["_id"] != first["task_id"]
    assert second["attempts"] == 2
    assert second["video_id"] == task_of(fake_api, recording)["video_id"]
    assert len(fake_api.tasks) == 2 and fake_api.errors == []


def test_two_cameras_writing_0001_mp4_after_a_429_each_keep_their_own_task(
        daemon, fake_api, distinct_clips):
    cam1_clip, cam2_clip = distinct_clips(2)
    daemon.settings["folders"][0]["recursive"] = True
    daemon.start()
    for cam in ("cam1", "cam2"):
        (daemon.inbox / cam).mkdir()
    shutil.copy(cam2_clip, daemon.inbox / "cam2" / "0001.mp4")
    wait_done_at(daemon, "cam2/0001.mp4")
    fake_api.inject("POST", "/tasks", status=429, body=None, headers={"Retry-After": "1"})
    shutil.copy(cam1_clip, daemon.inbox / "cam1" / "0001.mp4")
    cam1 = wait_done_at(daemon, "cam1/0001.mp4")
    cam2 = wait_done_at(daemon, "cam2/0001.mp4")
    assert cam1["task_id"] == task_of(fake_api, cam1_clip)["_id"]
    assert cam2["task_id"] == task_of(fake_api, cam2_clip)["_id"] != cam1["task_id"]
    assert cam1["attempts"] == 2 and len(fake_api.tasks) == 2
    # A 429 is a definitive "not created": nothing to look for.
    assert lookups(fake_api) == []


def test_create_then_drop_is_adopted_even_with_the_apis_clock_minutes_behind(
        daemon, fake_api, valid_clip):
    fake_api.clock_offset_seconds = -600  # the API's clock is 10 minutes behind ours
    fake_api.inject("POST", "/tasks", action="create_then_reset")
    daemon.start()
    shutil.copy(valid_clip, daemon.inbox / "lost.mp4")
    side = daemon.sidecar(daemon.wait_done("lost.mp4", timeout=40))
    (task_id,) = fake_api.tasks
    assert side["task_id"] == task_id and side["attempts"] == 1
    assert fake_api.count("POST", "/tasks") == 1
    assert "adopted the task an earlier attempt created" in daemon.log()


def test_create_then_drop_waits_for_indexing_to_prove_which_same_named_task_is_its_own(
        daemon, fake_api, distinct_clips):
    earlier, recording = distinct_clips(2)
    daemon.start()
    shutil.copy(earlier, daemon.inbox / "rec.mp4")
    daemon.wait_done("rec.mp4")
    # From now on a task takes 3 s to index; the earlier one is older than that already.
    first_task = next(iter(fake_api.tasks.values()))
    wait_for(lambda: time.monotonic() - first_task["started"] > 3.2, what="an older task")
    fake_api.set_progression((("validating", 0.0), ("indexing", 0.2), ("ready", 3.0)))
    fake_api.inject("POST", "/tasks", action="create_then_reset")
    shutil.copy(recording, daemon.inbox / "rec.mp4")
    first, second = sorted(wait_sidecars(daemon, 2), key=lambda s: s["sha256"] == sha256(
        recording))
    assert second["task_id"] == task_of(fake_api, recording)["_id"] != first["task_id"]
    assert second["attempts"] == 1 and len(fake_api.tasks) == 2  # exactly one task each
    assert "to finish indexing" in daemon.log()
    assert "adopted the task an earlier attempt created" in daemon.log()


def test_a_candidate_whose_content_cannot_be_read_is_uploaded_again_with_a_warning(
        daemon, fake_api, valid_clip):
    fake_api.user_metadata_shown = "nowhere"
    fake_api.inject("POST", "/tasks", action="create_then_reset")
    daemon.start()
    shutil.copy(valid_clip, daemon.inbox / "blind.mp4")
    side = daemon.sidecar(daemon.wait_done("blind.mp4", timeout=40))
    assert len(fake_api.tasks) == 2  # a duplicate costs money; a wrong adoption loses video
    orphan, own = sorted(fake_api.tasks.values(), key=lambda t: t["created_ms"])
    assert side["task_id"] == own["_id"] and side["attempts"] == 2
    warning = [line for line in daemon.log().splitlines() if "possible duplicate" in line]
    assert warning and "WARNING" in warning[0]
    assert orphan["_id"] in warning[0] and own["_id"] in warning[0]


def test_a_reload_that_changes_the_index_sends_files_not_yet_uploaded_to_the_new_one(
        daemon, fake_api, distinct_clips):
    backing_off, settling = distinct_clips(2)
    fake_api.indexes.append("idx_new")
    daemon.settings["settle_seconds"] = 2.0
    daemon.start()
    fake_api.inject("POST", "/tasks", status=429, body=None, headers={"Retry-After": "4"})
    shutil.copy(backing_off, daemon.inbox / "a.mp4")
    wait_for(lambda: fake_api.count("POST", "/tasks") == 1, what="the refused upload")
    shutil.copy(settling, daemon.inbox / "b.mp4")
    daemon.settings["folders"][0]["index_id"] = "idx_new"
    Path(daemon.write_config()).write_text(yaml.safe_dump(daemon.settings))
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "reloaded" in daemon.log(), what="the reload")
    for name, clip in (("a.mp4", backing_off), ("b.mp4", settling)):
        side = daemon.sidecar(daemon.wait_done(name, timeout=40))
        task = task_of(fake_api, clip)
        assert (side["index_id"], task["index_id"], side["task_id"]) == (
            "idx_new", "idx_new", task["_id"]), name
