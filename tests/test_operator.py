"""Operator commands on a prepared database and folder tree: status, explain, retry, scan.

Run in-process through ``cli.main`` (real parsing, real output), human and
JSON. The daemon-backed cases (retry while it runs, live progress) are at the
end and use the real daemon.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import watcherd.cli.main as cli
from tests.conftest import wait_for
from watcherd.simulator.clips import make_video
from watcherd.state.states import State
from watcherd.state.store import Store

OLD = time.time() - 3600  # an mtime long settled
SETTLE = 1.0  # ctime cannot be set back, so "settled" files are simply left alone this long


def let_settle() -> None:
    time.sleep(SETTLE + 0.1)


@pytest.fixture
def tree(tmp_path, valid_clip):
    """A folder, its config and a database with one file in every state."""
    inbox = tmp_path / "inbox"
    (inbox / "done").mkdir(parents=True)
    (inbox / "failed").mkdir()
    config = tmp_path / "config.yaml"
    config.write_text(f"state_db: {tmp_path / 'state.db'}\nsettle_seconds: {SETTLE}\n"
                      f"folders:\n  - {{path: {inbox}, index_id: idx}}\n")
    store = Store(tmp_path / "state.db").open()
    rows = {}

    def add(name: str, *steps: tuple, where: Path = inbox, **fields) -> int:
        path = inbox / name
        target = where / name
        shutil.copy(valid_clip, target)
        os.utime(target, (OLD, OLD))
        record = store.add(path=str(path), folder=str(inbox), index_id="idx",
                           size=target.stat().st_size, mtime_ns=target.stat().st_mtime_ns)
        for state, detail, extra in steps:
            store.transition(record.id, state, detail, **extra)
        if fields:
            store.update(record.id, **fields)
        rows[name] = record.id
        return record.id

    add("settling.mp4")
    add("queued-1.mp4", (State.QUEUED, "unchanged for 30s", {}))
    add("queued-2.mp4", (State.QUEUED, "unchanged for 30s", {}))
    add("validating.mp4", (State.QUEUED, None, {}), (State.VALIDATING, None, {}))
    add("uploading.mp4", (State.QUEUED, None, {}), (State.UPLOADING, "attempt 1",
                                                     {"attempts": 1}))
    add("indexing.mp4", (State.QUEUED, None, {}),
        (State.INDEXING, "uploaded", {"task_id": "task_idx", "uploaded_at": time.time() - 90}),
        remote_status="pending")
    done = add("done.mp4", (State.INDEXING, "uploaded", {"task_id": "task_done"}),
               (State.DONE, "moved", {"video_id": "vid_1", "finished_at": time.time(),
                                      "dest_path": str(inbox / "done" / "done.mp4")}),
               where=inbox / "done", sha256="a" * 64)
    add("copy.mp4", (State.INDEXING, "duplicate", {"task_id": "task_done"}),
        (State.DONE, "moved", {"video_id": "vid_1", "dest_path": str(inbox / "done" /
                                                                     "copy.mp4")}),
        where=inbox / "done", duplicate_of=done)
    add("short.mp4", (State.FAILED, "duration 2 s is below the minimum of 4 s",
                      {"reason": "duration 2 s is below the minimum of 4 s", "rule": "duration",
                       "dest_path": str(inbox / "failed" / "short.mp4")}),
        where=inbox / "failed")
    add("refused.mp4", (State.INDEXING, "uploaded", {"task_id": "task_bad"}),
        (State.FAILED, "task failed", {"reason": "Twelve Labs could not index it",
                                       "dest_path": str(inbox / "failed" / "refused.mp4")}),
        where=inbox / "failed")
    (inbox / "failed" / "short.mp4.json").write_text("{}")
    gone = add("gone.mp4", (State.VANISHED, "file disappeared before upload",
                            {"reason": "file disappeared before upload"}))
    (inbox / "gone.mp4").unlink()
    store.close()
    del gone
    return {"inbox": inbox, "config": str(config), "db": tmp_path / "state.db", "rows": rows}


def run(capsys, *args: str) -> tuple[int, str]:
    code = cli.main(list(args))
    return code, capsys.readouterr().out


def explain_json(capsys, tree, path) -> dict:
    code, out = run(capsys, "explain", str(path), "-c", tree["config"], "--json")
    assert code == 0
    return json.loads(out)


@pytest.mark.parametrize("name, where, status, words", [
    ("settling.mp4", "", "settling", "unchanged for"),
    ("queued-2.mp4", "", "queued", "number 2 in the queue"),
    ("validating.mp4", "", "validating", "being checked"),
    ("uploading.mp4", "", "uploading", "attempt 1"),
    ("indexing.mp4", "", "indexing", "task task_idx is pending"),
    ("done.mp4", "done", "done", "as video vid_1"),
    ("copy.mp4", "done", "duplicate", "same content as"),
    ("short.mp4", "failed", "failed", "rule 'duration'"),
    ("gone.mp4", "", "vanished", "disappeared"),
])
def test_explain_says_why_for_every_state(capsys, tree, name, where, status, words):
    path = tree["inbox"] / where / name
    result = explain_json(capsys, tree, path)
    assert result["status"] == status and words in result["summary"], result
    assert result["history"][0]["to"] == "settling"  # the whole story, from the start
    code, text = run(capsys, "explain", str(path), "-c", tree["config"])
    assert code == 0 and f"{status}: " in text and "History" in text


def test_explain_a_duplicate_names_the_original(capsys, tree):
    result = explain_json(capsys, tree, tree["inbox"] / "done" / "copy.mp4")
    assert result["details"]["duplicate_of"] == str(tree["inbox"] / "done.mp4")


def test_explain_a_file_the_daemon_never_saw(capsys, tree, clip_dir, tmp_path):
    inbox = tree["inbox"]
    (inbox / "notes.txt").write_text("x")
    (inbox / "clip.mp4.part").write_text("x")
    shutil.copy(clip_dir / "valid.mp4", inbox / "new.mp4")
    make_video(inbox / "tiny.mp4", seconds=2)
    let_settle()
    shutil.copy(clip_dir / "valid.mp4", inbox / "fresh.mp4")  # just written: still settling
    expected = {
        inbox / "notes.txt": ("ignored", "not a video extension (.txt)"),
        inbox / "clip.mp4.part": ("ignored", "partial download name (.part)"),
        inbox / "done" / "x.mp4": ("ignored", "inside done_dir"),
        tmp_path / "elsewhere.mp4": ("outside", "not in any configured folder"),
        inbox / "nothing.mp4": ("missing", "no such file"),
        inbox / "fresh.mp4": ("settling", f"of {SETTLE:g}s"),
        inbox / "tiny.mp4": ("would_reject", "rule 'duration'"),
        inbox / "new.mp4": ("would_upload", "index idx"),
    }
    for path, (status, words) in expected.items():
        result = explain_json(capsys, tree, path)
        assert (result["status"], result["record"]) == (status, None), result
        assert words in result["summary"], result


def test_status_json_and_text_from_the_database_and_the_daemons_runtime_row(capsys, tree):
    store = Store(tree["db"])
    uploading = tree["rows"]["uploading.mp4"]
    store.publish_runtime({
        "pid": os.getpid(), "version": "test", "started_at": time.time() - 60,
        "folders": [{"path": str(tree["inbox"]), "mode": "polling", "healthy": True,
                     "problem": None, "last_scan": time.time() - 5}],
        "uploads": [{"file_id": uploading, "path": "x", "sent": 43, "total": 100,
                     "rate": 2 * 2**20}],
        "gate": {"state": "paused", "reason": "401 api_key_invalid", "kind": "AuthError",
                 "fix": "put a valid API key", "until": None},
        "problems": []})
    store.close()
    code, out = run(capsys, "status", "-c", tree["config"], "--json")
    status = json.loads(out)
    assert code == 0 and status["daemon"]["running"] and status["daemon"]["pid"] == os.getpid()
    assert status["uploads"]["state"] == "paused" and status["uploads"]["fix"]
    [folder] = status["folders"]
    assert folder["watch"]["mode"] == "polling" and folder["watch"]["healthy"]
    assert folder["counts"] == {"settling": 1, "queued": 2, "validating": 1, "uploading": 1,
                                "indexing": 1, "finalizing": 0, "done": 2, "failed": 2,
                                "vanished": 1}
    active = {Path(a["path"]).name: a for a in status["active"]}
    assert active["uploading.mp4"]["percent"] == 43
    assert active["uploading.mp4"]["rate_bytes_per_second"] == 2 * 2**20
    assert active["indexing.mp4"]["remote_status"] == "pending"
    assert 85 <= active["indexing.mp4"]["age_seconds"] <= 120
    assert {Path(r["path"]).name for r in status["recent"]["done"]} == {"done.mp4", "copy.mp4"}
    assert {r["reason"] for r in status["recent"]["failed"]} >= {"Twelve Labs could not index it"}

    code, text = run(capsys, "status", "-c", tree["config"])
    for words in ("daemon running", "uploads paused: 401 api_key_invalid",
                  "fix: put a valid API key", "polling ok", "43% 2.0 MiB/s", "task_idx",
                  "Recently done", "vid_1", "Recently failed", "below the minimum"):
        assert words in text, (words, text)
    assert "\x1b[" not in text  # piped: no colour


def test_status_without_a_fresh_runtime_row_says_the_daemon_is_not_running(capsys, tree):
    code, out = run(capsys, "status", "-c", tree["config"], "--json")
    assert code == 0 and json.loads(out)["daemon"] == {"running": False}
    store = Store(tree["db"], clock=lambda: time.time() - 60)
    store.publish_runtime({"pid": os.getpid()})
    store.close()
    assert json.loads(run(capsys, "status", "-c", tree["config"], "--json")[1])["daemon"] == \
        {"running": False}
    assert "daemon not running" in run(capsys, "status", "-c", tree["config"])[1]
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout
    store = Store(tree["db"])
    store.publish_runtime({"pid": int(dead)})  # fresh, but its process is gone
    store.close()
    assert json.loads(run(capsys, "status", "-c", tree["config"], "--json")[1])["daemon"] == \
        {"running": False}


def test_status_folder_filter_and_unknown_folder(capsys, tree, tmp_path):
    code, out = run(capsys, "status", "-c", tree["config"], "--json", "--folder",
                    str(tree["inbox"]))
    assert code == 0 and len(json.loads(out)["folders"]) == 1
    with pytest.raises(SystemExit, match="not a configured folder"):
        cli.main(["status", "-c", tree["config"], "--folder", str(tmp_path)])


def test_colour_only_when_asked_and_never_with_no_color(capsys, tree, monkeypatch):
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert "\x1b[" in run(capsys, "status", "-c", tree["config"])[1]
    monkeypatch.setenv("NO_COLOR", "1")
    assert "\x1b[" not in run(capsys, "status", "-c", tree["config"])[1]


def test_retry_dry_run_moves_nothing(capsys, tree):
    code, out = run(capsys, "retry", "--failed", "--dry-run", "-c", tree["config"], "--json")
    results = json.loads(out)
    assert code == 0 and {Path(r["to"]).name for r in results} == {"short.mp4", "refused.mp4"}
    assert not any(r["moved"] for r in results)
    assert (tree["inbox"] / "failed" / "short.mp4").exists()
    assert not (tree["inbox"] / "short.mp4").exists()


def test_retry_by_failed_path_moves_it_home_and_notes_it(capsys, tree):
    failed = tree["inbox"] / "failed" / "short.mp4"
    code, text = run(capsys, "retry", str(failed), "-c", tree["config"])
    assert code == 0 and "moved" in text
    assert (tree["inbox"] / "short.mp4").exists() and not failed.exists()
    assert not failed.with_name("short.mp4.json").exists()
    history = explain_json(capsys, tree, tree["inbox"] / "short.mp4")["history"]
    assert "retry requested by an operator" in history[-1]["detail"]
    # Already back: a second retry finds nothing to move.
    code, text = run(capsys, "retry", str(failed), "-c", tree["config"])
    assert code == 1 and "skipped: no longer in failed/" in text


def test_a_file_that_failed_twice_is_retried_from_its_latest_row(capsys, tree):
    failed = tree["inbox"] / "failed" / "short.mp4"
    assert run(capsys, "retry", str(failed), "-c", tree["config"])[0] == 0
    store = Store(tree["db"])  # the daemon picked it up again and it failed again
    again = store.add(path=str(tree["inbox"] / "short.mp4"), folder=str(tree["inbox"]),
                      index_id="idx")
    store.transition(again.id, State.FAILED, "again", reason="still too short",
                     dest_path=str(failed))
    store.close()
    (tree["inbox"] / "short.mp4").rename(failed)
    for args in ([str(failed)], ["--failed"]):
        code, out = run(capsys, "retry", *args, "--dry-run", "-c", tree["config"], "--json")
        results = json.loads(out)
        mine = [r for r in results if r["to"].endswith("short.mp4")]
        assert code == 0 and [r["file_id"] for r in mine] == [again.id], results


def test_retry_by_task_id_and_by_folder(capsys, tree):
    code, out = run(capsys, "retry", "task_bad", "-c", tree["config"], "--json")
    assert code == 0 and json.loads(out)[0]["moved"]
    assert (tree["inbox"] / "refused.mp4").exists()
    code, out = run(capsys, "retry", "--failed", "--folder", str(tree["inbox"]), "-c",
                    tree["config"], "--json")
    assert [Path(r["to"]).name for r in json.loads(out) if r["moved"]] == ["short.mp4"]
    code, text = run(capsys, "retry", "task_nobody", "-c", tree["config"])
    assert code == 1 and "no failed file matches task_nobody" in text


def test_retry_will_not_strand_a_file_whose_folder_left_the_config(capsys, tree, tmp_path):
    other = tmp_path / "other-config.yaml"
    (tmp_path / "elsewhere").mkdir()
    other.write_text(f"state_db: {tree['db']}\n"
                     f"folders:\n  - {{path: {tmp_path / 'elsewhere'}, index_id: idx}}\n")
    code, out = run(capsys, "retry", "--failed", "-c", str(other), "--json")
    results = json.loads(out)
    assert code == 1 and results and not any(r["moved"] for r in results)
    assert all("no longer in the config" in r["skipped"] for r in results)
    assert (tree["inbox"] / "failed" / "short.mp4").exists()


def test_retry_needs_exactly_one_target(tree):
    with pytest.raises(SystemExit, match="not both"):
        cli.main(["retry", "-c", tree["config"]])
    with pytest.raises(SystemExit, match="not both"):
        cli.main(["retry", "x", "--failed", "-c", tree["config"]])


def test_scan_dry_run_classifies_every_file_and_changes_nothing(capsys, tree, clip_dir):
    inbox = tree["inbox"]
    (inbox / "notes.txt").write_text("x")
    make_video(inbox / "new.mp4", seconds=5.5)
    shutil.copy(inbox / "new.mp4", inbox / "new-copy.mp4")
    make_video(inbox / "tiny.mp4", seconds=2)
    let_settle()
    shutil.copy(clip_dir / "valid.mp4", inbox / "fresh.mp4")
    before = sorted(p for p in inbox.rglob("*"))
    db_before = tree["db"].read_bytes()
    code, out = run(capsys, "scan", "--dry-run", "-c", tree["config"], "--json")
    verdicts = {Path(r["path"]).name: (r["verdict"], r["detail"]) for r in json.loads(out)}
    assert code == 0
    assert verdicts["notes.txt"] == ("ignored", "not a video extension (.txt)")
    assert verdicts["fresh.mp4"][0] == "settling"
    assert verdicts["tiny.mp4"][0] == "invalid" and verdicts["tiny.mp4"][1].startswith(
        "duration:")
    assert verdicts["new-copy.mp4"] == ("would_upload", "to index idx")  # sorted first
    assert verdicts["new.mp4"][0] == "duplicate" and "new-copy.mp4" in verdicts["new.mp4"][1]
    assert verdicts["queued-1.mp4"] == ("tracked", "queued")
    assert "done.mp4" not in verdicts  # done/ and failed/ are not the inbox
    assert sorted(p for p in inbox.rglob("*")) == before and tree["db"].read_bytes() == db_before
    code, text = run(capsys, "scan", "--dry-run", "-c", tree["config"])
    assert "would upload" in text and "1 invalid" in text
    with pytest.raises(SystemExit, match="only --dry-run"):
        cli.main(["scan", "-c", tree["config"]])


def test_scan_finds_content_already_uploaded(capsys, tree, valid_clip):
    import hashlib

    store = Store(tree["db"])
    digest = hashlib.sha256(valid_clip.read_bytes()).hexdigest()
    done = tree["rows"]["done.mp4"]
    store.update(done, sha256=digest, outcome="ready")
    store.close()
    shutil.copy(valid_clip, tree["inbox"] / "again.mp4")
    let_settle()
    results = json.loads(run(capsys, "scan", "--dry-run", "-c", tree["config"], "--json")[1])
    again = next(r for r in results if r["path"].endswith("again.mp4"))
    assert again["verdict"] == "duplicate" and "done.mp4 (done)" in again["detail"]


def test_probe_prints_facts_and_verdicts_as_tables(capsys, valid_clip):
    code, text = run(capsys, "probe", str(valid_clip))
    assert code == 0
    assert "fact" in text and "width" in text and "PASS" in text and "ACCEPTED" in text


# -- with the real daemon ------------------------------------------------------

def test_retry_while_the_daemon_runs_uploads_the_file_once_more(daemon, fake_api, valid_clip):
    fake_api.fail_filenames(["flaky.mp4"])
    daemon.start()
    shutil.copy(valid_clip, daemon.inbox / "flaky.mp4")
    daemon.wait_done("flaky.mp4", "failed")
    assert len([u for u in fake_api.uploads() if u.file.filename == "flaky.mp4"]) == 1
    fake_api.stop_failing(["flaky.mp4"])
    config = str(daemon.write_config())
    assert cli.main(["retry", str(daemon.failed / "flaky.mp4"), "-c", config]) == 0
    daemon.wait_done("flaky.mp4", "done")
    time.sleep(1.5)  # a rescan later, still exactly one more upload
    assert len([u for u in fake_api.uploads() if u.file.filename == "flaky.mp4"]) == 2
    rows = [r for r in daemon.status() if r["path"].endswith("flaky.mp4")]
    assert sorted(r["state"] for r in rows) == ["done", "failed"]
    assert daemon.stop() == 0


def test_status_and_explain_show_a_live_upload(daemon, fake_api, valid_clip, capsys):
    fake_api.inject("POST", "/tasks", action="late", delay=4)
    daemon.start()
    shutil.copy(valid_clip, daemon.inbox / "slow.mp4")
    config = str(daemon.write_config())

    def live() -> dict | None:
        cli.main(["status", "-c", config, "--json"])
        status = json.loads(capsys.readouterr().out)
        return next((a for a in status["active"] if a["percent"] is not None), None)
    entry = wait_for(live, 15, "a live upload in status")
    assert entry["path"].endswith("slow.mp4") and entry["percent"] == 100
    result = explain_json(capsys, {"config": config}, daemon.inbox / "slow.mp4")
    assert result["status"] == "uploading" and "100% sent" in result["summary"]
    daemon.wait_done("slow.mp4")
    assert daemon.stop() == 0


def test_run_on_a_terminal_shows_live_upload_bars(daemon, fake_api, valid_clip):
    import pty
    import threading

    fake_api.inject("POST", "/tasks", action="late", delay=3)
    main, child = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "watcherd", "run", "-c",
                             str(daemon.write_config())], stdin=subprocess.DEVNULL,
                            stdout=child, stderr=child, env={**daemon.env, "COLUMNS": "120"})
    os.close(child)
    seen = bytearray()

    def read() -> None:
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:
                return
            if not chunk:
                return
            seen.extend(chunk)
    reader = threading.Thread(target=read)
    reader.start()
    try:
        wait_for(lambda: b"watcherd started" in seen, 30, lambda: seen.decode(errors="replace"))
        shutil.copy(valid_clip, daemon.inbox / "bar.mp4")
        # A bar: the name, then bytes sent of the total, while the answer is late.
        wait_for(lambda: b"bar.mp4" in seen and b"kB" in seen, 20,
                 lambda: seen.decode(errors="replace")[-2000:])
        daemon.wait_done("bar.mp4")
    finally:
        proc.terminate()
        assert proc.wait(30) == 0
        reader.join(5)
        os.close(main)
    text = seen.decode(errors="replace")
    assert "INFO" in text and "\x1b[" in text  # log lines and bars share the terminal
