"""What goes in with a video, end to end: the real daemon against the strict simulator.

Folder, path and file metadata merged in that order and sent as user_metadata
(the simulator refuses anything Twelve Labs would), every rule a metadata file
can break (zero uploads), a metadata file arriving after its video (within and
past ``metadata_wait_seconds``), and the metadata file travelling with its video.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import wait_for
from watcherd.exitcodes import EXIT_CONFIG


def sent_metadata(fake_api) -> dict[str, dict]:
    """Each uploaded file name with the user_metadata it was sent with."""
    return {u.file.filename: json.loads(u.fields["user_metadata"]) for u in fake_api.uploads()}


def uploads_of_any_kind(fake_api) -> int:
    return fake_api.count("POST", "/tasks") + fake_api.count("POST", "/assets")


def test_file_over_path_over_folder_sent_recorded_and_explained(daemon, fake_api,
                                                                distinct_clips):
    nested, flat = distinct_clips(2)
    folder = daemon.settings["folders"][0]
    folder.update(recursive=True, path_metadata="{customer}/{project}/*",
                  user_metadata={"team": "news", "project": "from-folder", "year": 2026})
    shoot = daemon.inbox / "acme" / "launch"
    shoot.mkdir(parents=True)
    (shoot / "clip.mp4.meta.json").write_text(json.dumps(
        {"project": "from-file", "rights": ["web", "tv"], "id": "9007199254740993"}))
    shutil.copy(nested, shoot / "clip.mp4")
    shutil.copy(flat, daemon.inbox / "flat.mp4")
    daemon.start()
    moved = daemon.done / "acme" / "launch" / "clip.mp4"
    wait_for(Path(f"{moved}.json").exists, 20, daemon.log)
    flat_moved = daemon.wait_done("flat.mp4")

    sidecar = daemon.sidecar(moved)
    assert sidecar["user_metadata"] == {
        "team": "news", "year": 2026, "customer": "acme", "project": "from-file",
        "rights": ["web", "tv"], "id": "9007199254740993", "sha256": sidecar["sha256"],
        "source_path": str(shoot / "clip.mp4"),
        "watcherd_file_id": sidecar["user_metadata"]["watcherd_file_id"]}
    assert sidecar["user_metadata_sources"] == {
        "team": "folder", "year": "folder", "customer": "path", "project": "file",
        "rights": "file", "id": "file", "sha256": "watcherd", "source_path": "watcherd",
        "watcherd_file_id": "watcherd"}
    assert sent_metadata(fake_api)["clip.mp4"] == sidecar["user_metadata"]  # as sent
    # The metadata file travels with its video.
    assert not (shoot / "clip.mp4.meta.json").exists()
    assert sidecar["metadata_file"] == f"{moved}.meta.json"
    assert json.loads(Path(sidecar["metadata_file"]).read_text())["project"] == "from-file"

    # A path the template does not match: ingested with the folder's keys, and explain says why.
    flat_sent = daemon.sidecar(flat_moved)["user_metadata"]
    assert {k: flat_sent[k] for k in ("team", "project")} == {"team": "news",
                                                              "project": "from-folder"}
    assert "customer" not in flat_sent
    explained = daemon.command_json("explain", str(flat_moved))
    assert explained["metadata"]["sources"]["project"] == "folder"
    assert "'flat.mp4' has 1 path segments" in explained["metadata"]["notes"][0]


def test_scan_dry_run_shows_the_merge_and_the_metadata_file_is_no_candidate(daemon, valid_clip):
    daemon.settings["folders"][0]["user_metadata"] = {"team": "news"}
    shutil.copy(valid_clip, daemon.inbox / "clip.mp4")
    (daemon.inbox / "clip.mp4.meta.json").write_text('{"team": "sport"}')
    time.sleep(0.6)  # quiet for longer than settle_seconds
    results = {Path(r["path"]).name: r for r in daemon.command_json("scan", "--dry-run")}
    assert results["clip.mp4"]["verdict"] == "would_upload"
    assert results["clip.mp4"]["metadata"]["user_metadata"] == {"team": "sport"}
    assert results["clip.mp4"]["metadata"]["sources"] == {"team": "file"}
    meta = results["clip.mp4.meta.json"]
    assert meta["verdict"] == "ignored" and meta["detail"].startswith("metadata file of clip.mp4")
    explained = daemon.command_json("explain", str(daemon.inbox / "clip.mp4"))
    assert explained["status"] == "would_upload"
    assert explained["metadata"]["sources"] == {"team": "file"}


BROKEN = {
    "not-json.mp4": ("{team: news", "is not valid JSON"),
    "not-object.mp4": ('["news"]', "must hold a JSON object"),
    "reserved.mp4": ('{"sha256": "0000"}', "'sha256' is reserved"),
    "wide-int.mp4": ('{"frame": 9007199254740993}', "wider than 53 bits"),
    "nested.mp4": ('{"crew": {"camera": "kim"}}', "must be a string, a number"),
    "mixed-list.mp4": ('{"tags": ["a", 1]}', "a list must hold only strings"),
    "nan.mp4": ('{"score": NaN}', "is not valid JSON"),
}


def test_every_broken_metadata_file_fails_its_video_with_zero_uploads(daemon, fake_api,
                                                                      valid_clip):
    for name, (text, _) in BROKEN.items():
        (daemon.inbox / f"{name}.meta.json").write_text(text)
        shutil.copy(valid_clip, daemon.inbox / name)
    daemon.start()
    for name, (_, why) in BROKEN.items():
        failed = daemon.wait_done(name, "failed")
        sidecar = daemon.sidecar(failed)
        assert sidecar["rule"] == "metadata" and why in sidecar["reason"], (name, sidecar)
        assert sidecar["user_metadata"] is None  # nothing was sent
        assert Path(f"{failed}.meta.json").read_text() == BROKEN[name][0]  # moved with it
        assert not (daemon.inbox / f"{name}.meta.json").exists()
    assert uploads_of_any_kind(fake_api) == 0


def test_broken_folder_metadata_is_exit_78_with_the_key(daemon):
    daemon.settings["folders"][0]["user_metadata"] = {"source_path": "x", "n": 2**60}
    done = subprocess.run([sys.executable, "-m", "watcherd", "check-config", "-c",
                           str(daemon.write_config())], capture_output=True, text=True,
                          env=daemon.env, timeout=60)
    assert done.returncode == EXIT_CONFIG
    assert "folders[0].user_metadata.source_path: 'source_path' is reserved" in done.stderr
    assert "folders[0].user_metadata.n: the integer 1152921504606846976" in done.stderr


def test_required_metadata_arriving_within_the_wait_and_past_it(daemon, fake_api,
                                                                distinct_clips):
    early, late = distinct_clips(2)
    daemon.settings["folders"][0].update(metadata="required", metadata_wait_seconds=4)
    daemon.start()
    shutil.copy(early, daemon.inbox / "early.mp4")
    shutil.copy(late, daemon.inbox / "late.mp4")
    wait_for(lambda: daemon.log().count("waiting up to 4s for its metadata file") == 2,
             10, daemon.log)
    (daemon.inbox / "early.mp4.meta.json").write_text('{"shot": "a"}')
    daemon.wait_done("early.mp4")
    failed = daemon.wait_done("late.mp4", "failed")
    reason = daemon.sidecar(failed)["reason"]
    assert "late.mp4.meta.json did not arrive within 4s of the video settling" in reason
    (daemon.inbox / "late.mp4.meta.json").write_text('{"shot": "b"}')  # past the wait
    assert list(sent_metadata(fake_api)) == ["early.mp4"]
    assert sent_metadata(fake_api)["early.mp4"]["shot"] == "a"
    assert (daemon.inbox / "late.mp4.meta.json").exists()  # never a candidate: left alone
