"""Any name the filesystem allows, end to end: bytes that are not UTF-8, names near NAME_MAX."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

# "café ÿ take.mp4" written in Latin-1: two bytes that are not UTF-8.
LATIN1_NAME = os.fsdecode(b"caf\xe9 \xff take.mp4")
LATIN1_SHOWN = "caf\\xe9 \\xff take.mp4"
LONG_NAME = "v" * 246 + ".mp4"          # 250 bytes: "<name>.json" is exactly 255
LONGEST_NAME = "w" * 242 + "ééé.mp4"    # 252 bytes: "<name>.json" would be 257


def watcherd(daemon, *args: str | bytes) -> subprocess.CompletedProcess:
    config = daemon.write_config()
    return subprocess.run([sys.executable, "-m", "watcherd", *args, "-c", str(config)],
                          capture_output=True, env=daemon.env, timeout=120, check=False)


def test_a_name_that_is_not_utf8_reaches_done_and_is_shown_escaped(daemon, fake_api,
                                                                  valid_clip):
    daemon.start()
    source = daemon.inbox / LATIN1_NAME
    shutil.copy(valid_clip, source)
    moved = daemon.wait_done(LATIN1_NAME)
    assert moved.read_bytes() == valid_clip.read_bytes() and not source.exists()
    (upload,) = fake_api.uploads()  # the strict fake refuses a header that is not UTF-8
    assert upload.file.filename == "caf\ufffd \ufffd take.mp4"
    side = daemon.sidecar(moved)
    shown = f"{daemon.inbox}/{LATIN1_SHOWN}"
    assert side["source_path"] == shown and side["original_name"] == LATIN1_SHOWN
    assert side["moved_to"] == f"{daemon.done}/{LATIN1_SHOWN}"
    assert json.loads(upload.fields["user_metadata"])["source_path"] == shown
    (row,) = daemon.status()
    assert (row["path"], row["state"]) == (shown, "done")
    # The exact bytes round-trip through the database: explain finds the file by them.
    explained = watcherd(daemon, "explain", "--json", os.fsencode(source))
    assert explained.returncode == 0, explained.stderr
    result = json.loads(explained.stdout)
    assert (result["status"], result["path"]) == ("done", shown)
    assert "Traceback" not in daemon.log() and "Logging error" not in daemon.log()


def test_a_250_byte_name_reaches_done_with_its_sidecar(daemon, fake_api, valid_clip):
    daemon.start()
    shutil.copy(valid_clip, daemon.inbox / LONG_NAME)
    moved = daemon.wait_done(LONG_NAME)
    side = daemon.sidecar(moved)
    assert side["status"] == "ready" and side["original_name"] == LONG_NAME
    assert sorted(p.name for p in daemon.done.iterdir()) == [LONG_NAME, LONG_NAME + ".json"]
    assert "nothing is lost" not in daemon.log()


def test_a_name_too_long_for_its_sidecar_is_shortened_and_the_sidecar_keeps_it(
        daemon, fake_api, distinct_clips):
    first, second = distinct_clips(2)
    daemon.start()
    shutil.copy(first, daemon.inbox / LONGEST_NAME)
    # Cut to fit 250 bytes (255 with ".json"), never inside a character: 249 bytes here.
    shortened = "w" * 242 + "….mp4"
    daemon.wait_done(shortened)
    # The same name again collides: "-1" goes before the extension, the stem is cut more.
    shutil.copy(second, daemon.inbox / LONGEST_NAME)
    collided = "w" * 241 + "…-1.mp4"
    side = daemon.sidecar(daemon.wait_done(collided))
    assert side["original_name"] == LONGEST_NAME
    assert side["source_path"] == f"{daemon.inbox}/{LONGEST_NAME}"
    assert all(len(os.fsencode(p.name)) <= 255 for p in daemon.done.iterdir())
    assert len(fake_api.uploads()) == 2


def test_scan_dry_run_handles_names_that_are_not_utf8_or_near_name_max(daemon, valid_clip,
                                                                       distinct_clips):
    daemon.settings["settle_seconds"] = 0
    clips = distinct_clips(3)
    for clip, name in zip(clips, (LATIN1_NAME, LONG_NAME, LONGEST_NAME), strict=True):
        shutil.copy(clip, daemon.inbox / name)
    scanned = watcherd(daemon, "scan", "--dry-run", "--json")
    assert scanned.returncode == 0, scanned.stderr.decode()
    verdicts = {Path(r["path"]).name: r["verdict"] for r in json.loads(scanned.stdout)}
    assert verdicts == {LATIN1_SHOWN: "would_upload", LONG_NAME: "would_upload",
                        LONGEST_NAME: "would_upload"}
    human = watcherd(daemon, "scan", "--dry-run")
    assert human.returncode == 0 and human.stderr == b""
    assert b"3 would upload" in human.stdout
