"""Runtime conditions pause; they never stop the daemon or fail a file (issue 12 items 2, 4).

A refused key at start or while running, a key file caught empty or missing
mid-rotation, and an index deleted while running: files stay in the inbox,
the log says why with the fix (once per check interval, not once per file),
STATUS= and ``watcherd status`` say uploads are paused, and the daemon
resumes by itself once the cause is gone (or at once on SIGHUP).
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.conftest import TEST_KEY, DaemonRunner, wait_for
from tests.test_systemd_e2e import NotifySocket

EXPIRED_KEY = "tlk_expired_key_0123456789"


@pytest.fixture
def notify() -> Iterator[NotifySocket]:
    sock = NotifySocket()
    yield sock
    sock.close()


def with_key_file(daemon: DaemonRunner, key: str) -> object:
    key_file = daemon.root / "api-key"
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)
    daemon.settings["api"]["key_file"] = str(key_file)
    daemon.env.pop("TWELVELABS_API_KEY")
    return key_file


def status_json(daemon: DaemonRunner) -> dict:
    out = subprocess.run([sys.executable, "-m", "watcherd", "status", "--json", "-c",
                          str(daemon.write_config())], capture_output=True, text=True,
                         env=daemon.env, timeout=60, check=True).stdout
    return json.loads(out)


def critical_pause_lines(daemon: DaemonRunner) -> list[str]:
    return [line for line in daemon.log().splitlines()
            if re.search(r"CRITICAL.*uploads (still )?paused", line)]


def inbox_untouched(daemon: DaemonRunner, names: list[str]) -> None:
    assert all((daemon.inbox / name).exists() for name in names)
    assert not daemon.failed.exists() or not list(daemon.failed.iterdir())


def test_a_refused_key_at_start_pauses_uploads_and_they_resume_once_the_key_works(
        daemon, fake_api, notify, distinct_clips):
    key_file = with_key_file(daemon, EXPIRED_KEY)
    daemon.env["NOTIFY_SOCKET"] = notify.path
    daemon.settings["pause_check_seconds"] = 1
    names = [f"weekend-{n}.mp4" for n in range(3)]
    for name, clip in zip(names, distinct_clips(3), strict=True):
        shutil.copy(clip, daemon.inbox / name)
    started = time.monotonic()
    daemon.start()  # not exit 78: the daemon runs, paused
    ready = notify.wait(lambda m: "READY=1" in m.splitlines(), "READY=1")
    assert "uploads paused" in ready and "401 api_key_invalid" in ready, ready

    wait_for(lambda: len(critical_pause_lines(daemon)) >= 2, 20,
             lambda: f"the pause said again after one interval:\n{daemon.log()[-3000:]}")
    first = critical_pause_lines(daemon)[0]
    assert f"refused the API key from file {key_file}" in first and "Fix:" in first
    assert "re-reads it and resumes by itself" in first
    uploads = wait_for(lambda: status_json(daemon)["uploads"], 20, "a published status")
    assert (uploads["state"], uploads["kind"]) == ("paused", "AuthError")
    assert "401" in uploads["reason"] and "API key" in uploads["fix"]
    inbox_untouched(daemon, names)
    assert fake_api.count("POST", "/tasks") == 0
    # Once per check interval, not once per file or per request.
    assert len(critical_pause_lines(daemon)) <= time.monotonic() - started + 2

    key_file.write_text(TEST_KEY + "\n")  # the operator puts in the new key
    for name in names:
        daemon.wait_done(name, timeout=30)
    assert "resuming uploads" in daemon.log() and len(fake_api.tasks) == 3
    assert EXPIRED_KEY not in daemon.log()
    notify.wait(lambda m: "STATUS=" in m and "3 done" in m and "paused" not in m,
                "STATUS without the pause")


def test_a_key_file_caught_empty_or_missing_mid_rotation_pauses_and_fails_nothing(
        daemon, fake_api, valid_clip):
    key_file = with_key_file(daemon, TEST_KEY)
    daemon.settings["pause_check_seconds"] = 0.5
    daemon.start()
    key_file.write_text("")  # the rotation truncated it and has not written yet
    shutil.copy(valid_clip, daemon.inbox / "rotating.mp4")
    wait_for(lambda: f"{key_file} is empty" in daemon.log(), 20,
             lambda: f"the empty key file to pause uploads:\n{daemon.log()[-3000:]}")
    key_file.unlink()  # ...or it is missing for a moment
    wait_for(lambda: "cannot read" in daemon.log(), 20, daemon.log)
    inbox_untouched(daemon, ["rotating.mp4"])
    wait_for(lambda: status_json(daemon)["uploads"]["state"] == "paused", 20,
             "status to say paused")  # published every 2 s
    key_file.write_text(TEST_KEY + "\n")
    key_file.chmod(0o600)
    daemon.wait_done("rotating.mp4", timeout=30)
    log = daemon.log()
    assert "unexpected error" not in log and "Traceback" not in log
    assert len(fake_api.tasks) == 1


def test_sighup_checks_a_paused_key_at_once(daemon, fake_api, valid_clip):
    key_file = with_key_file(daemon, EXPIRED_KEY)
    daemon.settings["pause_check_seconds"] = 600  # only the SIGHUP can resume in time
    daemon.start()
    shutil.copy(valid_clip, daemon.inbox / "hup.mp4")
    wait_for(lambda: critical_pause_lines(daemon), 20, daemon.log)
    key_file.write_text(TEST_KEY + "\n")
    daemon.proc.send_signal(signal.SIGHUP)
    daemon.wait_done("hup.mp4", timeout=30)
    assert "resuming uploads" in daemon.log()


def test_an_index_deleted_while_running_pauses_only_its_folder_until_it_returns(
        daemon, fake_api, distinct_clips):
    fake_api.indexes.append("idx_other")
    other = daemon.root / "other"
    other.mkdir()
    daemon.settings["folders"].append({"path": str(other), "index_id": "idx_other"})
    daemon.settings["pause_check_seconds"] = 1
    daemon.start()
    fake_api.indexes.remove("idx_test")  # someone deleted it in the console
    first, second, elsewhere = distinct_clips(3)
    shutil.copy(first, daemon.inbox / "a1.mp4")
    shutil.copy(second, daemon.inbox / "a2.mp4")
    shutil.copy(elsewhere, other / "b.mp4")
    wait_for(lambda: "folders[0].index_id: index idx_test no longer exists" in daemon.log(),
             20, lambda: f"the index pause:\n{daemon.log()[-3000:]}")
    wait_for((other / "done" / "b.mp4.json").exists, 20, daemon.log)  # the other folder goes on
    wait_for(lambda: [r["state"] for r in daemon.status()
                      if r["path"].startswith(str(daemon.inbox))] == ["queued", "queued"],
             20, daemon.status)  # both tried (or parked at once), neither failed
    time.sleep(1.5)  # more than a check interval: the paused folder stays paused
    inbox_untouched(daemon, ["a1.mp4", "a2.mp4"])
    into_gone = [r for r in fake_api.requests
                 if r.method == "POST" and r.fields.get("index_id") == "idx_test"]
    assert len(into_gone) <= 2  # each file tried once, then parked: no retry loop

    def folders_once_paused() -> dict | None:
        folders = {f["path"]: f for f in status_json(daemon)["folders"]}
        return folders if folders[str(daemon.inbox)]["paused"] else None

    folders = wait_for(folders_once_paused, 20, "status to show the paused folder")
    assert "resource_not_exist" in folders[str(daemon.inbox)]["paused"]
    assert folders[str(other)]["paused"] is None
    assert "still paused: folders[0].index_id" in daemon.log()

    fake_api.indexes.append("idx_test")  # it was restored
    for name in ("a1.mp4", "a2.mp4"):
        daemon.wait_done(name, timeout=30)
    assert "index idx_test answers again" in daemon.log()
    assert len(fake_api.tasks) == 3
