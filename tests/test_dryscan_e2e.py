"""``scan --dry-run`` says what the daemon then does, for a folder of every kind of file."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import Counter
from pathlib import Path

from tests.conftest import wait_for
from watcherd.simulator.clips import make_video

# What the daemon must then have done with a file of each verdict.
OUTCOME = {"would_upload": "uploaded", "duplicate": "joined", "tracked": "uploaded",
           "invalid": "failed", "ignored": "left alone"}


def outcome(daemon, fake_api, name: str) -> str | None:
    """What the daemon did with inbox/``name``, or None while it is not finished."""
    sent = {u.file.filename for u in fake_api.uploads()}
    for where, state in ((daemon.done, "done"), (daemon.failed, "failed")):
        sidecar = where / f"{name}.json"
        if sidecar.exists():
            if state == "failed":
                return "failed"
            joined = json.loads(sidecar.read_text())["duplicate_of"] is not None
            return "joined" if joined else "uploaded" if name in sent else "done, not sent"
    if os.path.lexists(daemon.inbox / name) and not any(
            row["path"] == str(daemon.inbox / name) for row in daemon.status()):
        return "left alone"
    return None


def test_the_dry_run_verdicts_are_what_the_daemon_then_does(daemon, fake_api, clip_dir,
                                                            distinct_clips):
    original, twin, single, elsewhere = distinct_clips(4)
    inbox = daemon.inbox
    # A file the daemon tracks: its first upload got a 500, so it waits to retry
    # (queued, one attempt made) when the daemon stops.
    fake_api.inject("POST", "/tasks", status=500, body="oops")
    daemon.start()
    shutil.copy(original, inbox / "original.mp4")
    wait_for(lambda: "upload attempt 1 failed" in daemon.log(), 30, daemon.log)
    assert daemon.stop() == 0
    files = {
        "copy-of-original.mp4": original,   # the daemon would join original.mp4's task
        "twin-a.mp4": twin, "twin-b.mp4": twin,  # identical to each other, both new
        "single.mp4": single,
        "short.mp4": make_video(clip_dir / "short-3s.mp4", seconds=3),
        ".hidden.mp4": single, "notes.txt": single, "clip.mp4.part": single,
        "~$owner.mp4": single, "backup.mp4~": single,
    }
    for name, content in files.items():
        shutil.copy(content, inbox / name)
    (inbox / "link.mp4").symlink_to(elsewhere)
    time.sleep(1.5)  # quiet for longer than settle_seconds

    verdicts = {Path(r["path"]).name: r["verdict"]
                for r in daemon.command_json("scan", "--dry-run")}
    assert verdicts["link.mp4"] == "ignored" and verdicts["copy-of-original.mp4"] == "duplicate"
    assert verdicts["original.mp4"] == "tracked"
    # explain decides with the same functions.
    assert daemon.command_json("explain", str(inbox / "link.mp4"))["status"] == "ignored"
    joins = daemon.command_json("explain", str(inbox / "copy-of-original.mp4"))
    assert joins["status"] == "would_join" and "original.mp4" in joins["summary"]

    daemon.start()
    names = sorted(verdicts)
    wait_for(lambda: all(outcome(daemon, fake_api, n) for n in names), 60,
             lambda: f"{ {n: outcome(daemon, fake_api, n) for n in names} }\n"
                     f"{daemon.log()[-3000:]}")
    outcomes = {n: outcome(daemon, fake_api, n) for n in names}
    # Which of two identical new files goes first is the daemon's choice: compare the pair.
    twins = ("twin-a.mp4", "twin-b.mp4")
    assert Counter(OUTCOME[verdicts[n]] for n in twins) == Counter(outcomes[n] for n in twins)
    assert {n: OUTCOME[v] for n, v in verdicts.items() if n not in twins} == \
        {n: o for n, o in outcomes.items() if n not in twins}
    assert len(fake_api.uploads()) == 3  # original, single, one twin
