"""The real daemon with metrics on: what /metrics says equals what the simulator saw,
and /healthz follows the watchdog's verdict."""

from __future__ import annotations

import shutil
import sys
from collections import Counter
from pathlib import Path

from tests.conftest import wait_for
from tests.metricsread import by_label, listener_url, scrape, value, wait_health
from watcherd import __version__
from watcherd.twelvelabs.routes import route_template

HERE = Path(__file__).resolve().parent


def simulator_requests(fake_api) -> Counter:
    """(method, route template) of every request the simulator answered."""
    prefix = "/" + fake_api.api_version
    with fake_api._lock:
        recorded = list(fake_api.requests)
    return Counter((r.method, route_template(r.path.removeprefix(prefix))) for r in recorded)


def test_a_burst_is_counted_as_the_simulator_saw_it(daemon, fake_api, distinct_clips):
    daemon.settings["metrics"] = {"listen": "127.0.0.1:0"}
    daemon.settings["upload_method"] = "tasks"  # the path whose requests are counted here
    daemon.start()
    base = listener_url(daemon.log())
    clips = distinct_clips(3)
    for n, clip in enumerate(clips):
        shutil.copy(clip, daemon.inbox / f"burst-{n}.mp4")
    for n in range(len(clips)):
        daemon.wait_done(f"burst-{n}.mp4")

    def requests_agree() -> bool:
        return by_label(scrape(base), "watcherd_api_requests_total", "method", "endpoint") \
            == simulator_requests(fake_api)

    # Equal once no request is in flight (the poller may be between answer and count).
    wait_for(requests_agree, 10, lambda: f"{scrape(base)} vs {simulator_requests(fake_api)}")
    samples = scrape(base)
    uploads = fake_api.uploads()
    assert len(uploads) == 3
    assert value(samples, "watcherd_uploads_started_total") == 3
    assert value(samples, "watcherd_uploads_finished_total") == 3
    assert by_label(samples, "watcherd_uploads_failed_total", "next_state") == Counter()
    assert value(samples, "watcherd_uploaded_bytes_total") == sum(u.file.size for u in uploads)
    assert value(samples, "watcherd_upload_duration_seconds_count") == 3
    assert value(samples, "watcherd_drop_to_ready_seconds_count") == 3
    assert value(samples, "watcherd_files_finished_total", state="done") == 3
    folder = str(daemon.inbox)
    assert value(samples, "watcherd_files", folder=folder, state="done") == 3
    assert value(samples, "watcherd_files", folder=folder, state="failed") == 0
    assert (("watcherd_files", frozenset({"folder": folder, "state": "queued"}.items()))
            in samples)  # every state is there, zeros too
    assert by_label(samples, "watcherd_api_requests_total", "status_class") == \
        Counter({("2xx",): sum(simulator_requests(fake_api).values())})
    assert value(samples, "watcherd_observer_up", folder=folder) == 1
    assert value(samples, "watcherd_queue_depth", queue="upload") == 0
    assert value(samples, "watcherd_uploads_paused", reason="none") == 0
    assert value(samples, "watcherd_backoff_remaining_seconds") == 0
    assert value(samples, "watcherd_healthy") == 1
    assert value(samples, "watcherd_build_info", version=__version__,
                 python=".".join(map(str, sys.version_info[:3]))) == 1
    assert not any("burst-" in str(labels) for _, labels in samples)  # no file names


def test_healthz_turns_503_while_a_thread_is_wedged_and_200_after(daemon, fake_api,
                                                                  valid_clip):
    daemon.command = [sys.executable, str(HERE / "sabotaged_daemon.py"), "stall:upload:9"]
    daemon.settings.update(metrics={"listen": "127.0.0.1:0"}, stall_seconds=5,
                           upload_method="tasks")
    daemon.start()
    base = listener_url(daemon.log())
    assert wait_health(base, 200, 10) == "ok\n"
    shutil.copy(valid_clip, daemon.inbox / "wedged.mp4")
    reason = wait_health(base, 503, 15)
    assert reason.startswith("thread upload-1 has made no progress for ") and \
        reason.count("\n") == 1
    assert value(scrape(base), "watcherd_healthy") == 0
    assert wait_health(base, 200, 15) == "ok\n"  # the upload went on
    daemon.wait_done("wedged.mp4")
