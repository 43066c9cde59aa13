"""The upload paths with the real daemon (issue 16 items 1 and 6): POST /tasks removed
pauses a folder on ``tasks`` with its files in the inbox and resumes by itself."""

from __future__ import annotations

import re
import shutil

import pytest

from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(90)


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
