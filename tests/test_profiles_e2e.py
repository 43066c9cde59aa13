"""The daemon validates with its index's profile, and with the cached one when offline."""

from __future__ import annotations

import shutil

from tests.conftest import wait_for
from tests.media import make_video
from watcherd.store import Store

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
