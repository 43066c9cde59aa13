"""The daemon validates with its index's profile, and with the cached one when offline."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

from tests.conftest import wait_for
from watcherd.simulator.clips import make_video
from watcherd.state.store import Store

UNREACHABLE = "http://127.0.0.1:9/v1.3"  # the discard port: nothing answers there


def test_the_indexs_profile_is_cached_and_used_by_a_start_without_network(daemon, fake_api,
                                                                         clip_dir):
    # 2.13:1 is fine for Marengo 3.0 (the default) but beyond what Marengo 2.7 took.
    cinema = [make_video(clip_dir / f"e2e-cinema-{n}.mp4", width=1920, height=900, seconds=4 + n,
                         fps=1, audio=False) for n in (1, 2)]
    fake_api.index_models["idx_test"] = ["marengo2.7"]
    daemon.start()
    assert "validating with marengo2.7 (from index: marengo2.7)" in daemon.log()
    shutil.copy(cinema[0], daemon.inbox / "first.mp4")
    side = daemon.sidecar(daemon.wait_done("first.mp4", "failed"))
    assert (side["rule"], side["model"]) == ("aspect_ratio", "marengo2.7"), side
    assert "(limits.max_aspect_ratio)" in side["reason"]
    assert daemon.stop() == 0
    store = Store(daemon.root / "state" / "state.db", readonly=True)
    assert store.index_models("idx_test")[0] == ("marengo2.7",)
    store.close()

    daemon.log_path.unlink()  # start() waits for "watcherd started" in a fresh log
    daemon.settings["api"]["base_url"] = UNREACHABLE
    daemon.start()
    assert "did not answer; validating with marengo2.7 (from cache: marengo2.7)" in daemon.log()
    shutil.copy(cinema[1], daemon.inbox / "second.mp4")
    side = daemon.sidecar(daemon.wait_done("second.mp4", "failed"))
    assert (side["rule"], side["model"]) == ("aspect_ratio", "marengo2.7"), side
    assert fake_api.uploads() == []


def test_without_a_cached_answer_an_offline_start_uses_the_newest_profile(daemon, clip_dir):
    daemon.settings["api"]["base_url"] = UNREACHABLE
    daemon.start()
    wait_for(lambda: "has not named its models yet and none are cached: validating with "
             "marengo3.0" in daemon.log(), what="the warning about the guessed profile")
    panorama = make_video(clip_dir / "e2e-panorama.mp4", width=900, height=360, seconds=5,
                          fps=1, audio=False)
    shutil.copy(panorama, daemon.inbox / "panorama.mp4")
    side = daemon.sidecar(daemon.wait_done("panorama.mp4", "failed"))
    assert (side["rule"], side["model"]) == ("aspect_ratio", "marengo3.0"), side


def test_explain_and_dry_scan_judge_with_the_profile_the_daemon_cached(tmp_path, clip_dir):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copy(make_video(clip_dir / "op-cinema.mp4", width=1920, height=900, seconds=5, fps=1,
                           audio=False), inbox / "cinema.mp4")
    config = tmp_path / "config.yaml"
    config.write_text(f"state_db: {tmp_path / 'state.db'}\nsettle_seconds: 0\n"
                      f"folders:\n  - {{path: {inbox}, index_id: idx_old}}\n")

    def run(*args: str) -> str:
        return subprocess.run([sys.executable, "-m", "watcherd", *args, "-c", str(config)],
                              capture_output=True, text=True, timeout=60, check=True).stdout

    def judged() -> tuple[str, str]:
        (row,) = json.loads(run("scan", "--dry-run", "--json"))
        return row["verdict"], json.loads(run("explain", str(inbox / "cinema.mp4"), "--json"))[
            "status"]

    assert judged() == ("would_upload", "would_upload")  # nothing cached: marengo3.0 takes 2.13:1
    store = Store(tmp_path / "state.db").open()
    store.save_index_models("idx_old", ("marengo2.7",))
    store.close()
    assert judged() == ("invalid", "would_reject")
