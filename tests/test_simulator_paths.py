"""The simulator's upload-path controls: a per-connection throttle measured on real
sockets, and the switches for chunk size, URL and session lifetimes, a 403 for
multipart and a removed ``POST /tasks``, from Python and from the command line."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from watcherd.simulator import FakeTwelveLabs
from watcherd.simulator.switches import SwitchError, Switches, apply, size_value

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent
RATE = 4_000_000  # bytes per second per connection
BODY = 1_600_000  # 0.4 s at RATE


@pytest.fixture
def api() -> Iterator[FakeTwelveLabs]:
    with FakeTwelveLabs() as fake:
        yield fake
    assert fake.errors == [], "\n".join(fake.errors)


def post_task(api: FakeTwelveLabs, size: int = BODY) -> requests.Response:
    return requests.post(api.base_url + "/tasks", headers={"x-api-key": api.api_key},
                         data={"index_id": "idx_test"},
                         files={"video_file": ("clip.mp4", b"\0" * size, "video/mp4")},
                         timeout=30)


def timed(action) -> float:
    started = time.monotonic()
    action()
    return time.monotonic() - started


def test_the_throttle_holds_one_upload_to_its_rate(api):
    apply(api, Switches(throttle=f"{RATE}"))
    seconds = timed(lambda: post_task(api).raise_for_status())
    rate = BODY / seconds
    assert 0.6 * RATE <= rate <= 1.05 * RATE, f"{rate:,.0f} B/s"  # a loaded machine is slower
    api.throttle_bytes_per_second = None
    assert timed(lambda: post_task(api).raise_for_status()) < seconds / 3
    assert 2 * BODY < api.body_bytes["tasks"] < 2 * BODY + 2000  # the form's few headers


def test_the_throttle_is_per_connection_and_covers_chunk_puts(api):
    """Two chunk PUTs at once each get the full rate: twice the bytes in the same time."""
    apply(api, Switches(throttle="4MB", chunk_size=f"{BODY}"))
    session = requests.post(api.base_url + "/assets/multipart-uploads",
                            headers={"x-api-key": api.api_key}, timeout=10,
                            json={"filename": "clip.mp4", "type": "video",
                                  "total_size": 2 * BODY}).json()
    assert session["chunk_size"] == BODY and session["total_chunks"] == 2
    answers: list[int] = []

    def put(url: str) -> None:
        answers.append(requests.put(url, data=b"\1" * BODY, timeout=30).status_code)

    threads = [threading.Thread(target=put, args=(u["url"],)) for u in session["upload_urls"]]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rate = 2 * BODY / (time.monotonic() - started)
    assert answers == [200, 200]
    assert api.body_bytes == {"tasks": 0, "storage": 2 * BODY}
    assert 1.4 * RATE <= rate <= 2.1 * RATE, f"{rate:,.0f} B/s over two connections"


def test_the_path_switches_set_the_simulator(api):
    lines = apply(api, Switches(chunk_size="1MiB", url_ttl=5, session_ttl=60,
                                multipart_forbidden=True, tasks_removed=410))
    assert (api.multipart_chunk_size, api.url_ttl_seconds, api.session_ttl_seconds) == \
        (1 << 20, 5, 60)
    assert lines == ["--chunk-size 1MiB", "--url-ttl 5", "--session-ttl 60",
                     "--tasks-removed 410", "--multipart-forbidden"]
    removed = post_task(api, 10)
    assert removed.status_code == 410 and removed.json()["code"] == "endpoint_removed"
    assert api.uploads() == []
    forbidden = requests.get(api.base_url + "/assets/multipart-uploads",
                             headers={"x-api-key": api.api_key}, timeout=10)
    assert forbidden.status_code == 403
    api.tasks_removed_status = 404
    assert post_task(api, 10).status_code == 404
    # Reading tasks still works: only the create is gone.
    assert requests.get(api.base_url + "/tasks", params={"index_id": "idx_test"},
                        headers={"x-api-key": api.api_key}, timeout=10).status_code == 200


@pytest.mark.parametrize(("text", "value"), [("20MB", 20_000_000), ("5MiB", 5 << 20),
                                             ("1048576", 1 << 20), ("2.5 MB/s", 2_500_000)])
def test_sizes_read_as_people_write_them(text, value):
    assert size_value("--throttle", text) == value


@pytest.mark.parametrize(("switches", "message"), [
    (Switches(throttle="fast"), "--throttle 'fast': a size like 20MB"),
    (Switches(chunk_size="0"), "--chunk-size '0': must be more than 0"),
    (Switches(url_ttl=0), "--url-ttl: seconds, more than 0"),
    (Switches(tasks_removed=500), "--tasks-removed: 404 or 410"),
])
def test_a_bad_path_switch_is_refused_by_name_and_turns_nothing_on(api, switches, message):
    with pytest.raises(SwitchError, match=re.escape(message)):
        apply(api, Switches(multipart_forbidden=True, throttle=switches.throttle,
                            chunk_size=switches.chunk_size, url_ttl=switches.url_ttl,
                            tasks_removed=switches.tasks_removed))
    assert not api.multipart_forbidden and api.throttle_bytes_per_second is None


def test_the_command_takes_the_path_flags():
    proc = subprocess.Popen(
        [sys.executable, "-m", "watcherd", "simulator", "--tasks-removed", "404",
         "--multipart-forbidden", "--throttle", "20MB", "--chunk-size", "6MiB"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        base_url = proc.stdout.readline().strip()
        banner = proc.stderr.readline()
        assert "--throttle 20MB; --chunk-size 6MiB; --tasks-removed 404; " \
               "--multipart-forbidden" in banner
        answer = requests.post(base_url + "/tasks", headers={"x-api-key": "tlk_test_key"},
                               data={"index_id": "idx_test"},
                               files={"video_file": ("a.mp4", b"x", "video/mp4")}, timeout=5)
        assert answer.status_code == 404
        proc.terminate()
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
