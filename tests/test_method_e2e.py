"""The upload paths with the real daemon (issue 16 items 1 and 6): an account refused
multipart falls back to POST /tasks (said once, shown by status); POST /tasks removed
pauses a folder on ``tasks`` with its files in the inbox and resumes by itself; the same
content dropped for two indexes is uploaded once and indexed twice."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator

import pytest

from tests.conftest import TEST_KEY, wait_for
from watcherd.simulator import FakeTwelveLabs

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def fake_api(tmp_path) -> Iterator[FakeTwelveLabs]:
    """Two indexes; small chunks, so a clip is a session of several chunks."""
    with FakeTwelveLabs(api_key=TEST_KEY, indexes=("idx_test", "idx_other"),
                        store_dir=tmp_path / "fake-store") as fake:
        fake.multipart_chunk_size = 64 << 10
        yield fake
    assert fake.errors == [], "the fake itself crashed:\n" + "\n".join(fake.errors)


def warning_lines(daemon, pattern: str) -> list[str]:
    return [line for line in daemon.log().splitlines()
            if "WARNING" in line and re.search(pattern, line)]


def error_lines(daemon, pattern: str) -> list[str]:
    return [line for line in daemon.log().splitlines()
            if "ERROR" in line and re.search(pattern, line)]


def test_post_tasks_removed_pauses_a_tasks_folder_and_resumes_when_it_answers(
        daemon, fake_api, valid_clip):
    daemon.settings["upload_method"] = "tasks"
    fake_api.tasks_removed_status = 410
    shutil.copy(valid_clip, daemon.inbox / "legacy.mp4")
    daemon.start()
    wait_for(lambda: error_lines(daemon, r"POST /tasks is gone"), 20,
             lambda: f"the ERROR (log:\n{daemon.log()[-3000:]})")
    line = error_lines(daemon, r"POST /tasks is gone")[0]
    assert "HTTP 410 endpoint_removed" in line and "folders[0] (upload_method tasks)" in line
    assert "set upload_method (or the folder's folders[i].upload_method) to auto" in line
    paths = wait_for(lambda: (daemon.command_json("status")["upload_paths"] or {}).get(
        "tasks_removed") and daemon.command_json("status")["upload_paths"], 20,
        "tasks_removed in status")
    assert paths["tasks_removed"].startswith("HTTP 410") and paths["waiting"] == 1
    assert (daemon.inbox / "legacy.mp4").exists() and not list(daemon.failed.glob("*"))
    row = daemon.command_json("explain", str(daemon.inbox / "legacy.mp4"))
    assert row["status"] == "queued"
    assert any("waiting for an upload path: POST /tasks is gone" in (h["detail"] or "")
               for h in row["history"])
    creates = fake_api.count("POST", "/tasks")
    fake_api.tasks_removed_status = None  # back: the pause check lets the file go
    daemon.wait_done("legacy.mp4")
    assert len(fake_api.uploads()) == 1
    assert creates >= 2  # the refused upload and at least one check, no task made by them
    assert "POST /tasks answers again" in daemon.log()


def test_an_account_refused_multipart_falls_back_to_tasks_said_once_and_shown(
        daemon, fake_api, valid_clip, distinct_clips):
    fake_api.multipart_forbidden = True
    daemon.settings["upload_method"] = "auto"
    first, second = distinct_clips(2)
    shutil.copy(first, daemon.inbox / "one.mp4")
    daemon.start()
    side = daemon.sidecar(daemon.wait_done("one.mp4"))
    assert side["upload_method"] == "tasks" and side["asset_id"] is None
    shutil.copy(second, daemon.inbox / "two.mp4")
    assert daemon.sidecar(daemon.wait_done("two.mp4"))["upload_method"] == "tasks"
    fallback = warning_lines(daemon, r"refuses multipart uploads for this account")
    assert len(fallback) == 1, daemon.log()[-3000:]
    assert "HTTP 403" in fallback[0] and "folders[0] (upload_method auto) upload through " \
        "POST /tasks instead, files up to 2.0 GiB" in fallback[0]
    assert len(fake_api.uploads()) == 2 and fake_api.uploads_by_id == {}
    paths = wait_for(lambda: (daemon.command_json("status")["upload_paths"] or {}).get(
        "multipart_refused") and daemon.command_json("status")["upload_paths"], 20,
        "multipart_refused in status")
    assert paths["fallback"] is True and paths["multipart_refused"].startswith("HTTP 403")


def test_the_same_content_for_two_indexes_is_uploaded_once_and_indexed_twice(
        daemon, fake_api, valid_clip):
    other = daemon.root / "other"
    other.mkdir()
    daemon.settings.update(upload_workers=2, upload_method="auto")
    daemon.settings["folders"].append({"path": str(other), "index_id": "idx_other"})
    daemon.start()
    shutil.copy(valid_clip, daemon.root / "a.tmp")
    shutil.copy(valid_clip, daemon.root / "b.tmp")
    (daemon.root / "a.tmp").rename(daemon.inbox / "same.mp4")
    (daemon.root / "b.tmp").rename(other / "same.mp4")
    first = daemon.sidecar(daemon.wait_done("same.mp4"))
    sidecar = other / "done" / "same.mp4.json"
    wait_for(sidecar.exists, 30, lambda: daemon.log()[-3000:])
    second = daemon.sidecar(other / "done" / "same.mp4")
    assert len(fake_api.uploads_by_id) == 1 and fake_api.uploads() == []
    assert fake_api.body_bytes["storage"] == valid_clip.stat().st_size  # every byte once
    assert first["asset_id"] == second["asset_id"]
    assert {first["index_id"], second["index_id"]} == {"idx_test", "idx_other"}
    assert first["indexed_asset_id"] != second["indexed_asset_id"]
    assert first["status"] == second["status"] == "ready"
    assert "indexed from that asset" in daemon.log()
