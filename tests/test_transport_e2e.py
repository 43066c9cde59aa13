"""The real daemon against the fake API when the transport misbehaves.

Issue 11 items 3-5 (the key stays home, no request storms, no request holds a thread
forever) and issue 12 item 1 (a rate-limit storm slows ingest, it never freezes it).
"""

from __future__ import annotations

import random
import re
import shutil
import struct
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import TEST_KEY, wait_for
from watcherd.config import parse_config
from watcherd.errors import ConfigError
from watcherd.simulator import FakeTwelveLabs


@pytest.fixture
def elsewhere():
    """The host a redirecting front points at: it must never see a request."""
    with FakeTwelveLabs(api_key=TEST_KEY) as fake:
        yield fake


def run_once(daemon, command: str = "run") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "watcherd", command, "-c",
                           str(daemon.write_config())], capture_output=True, text=True,
                          env=daemon.env, timeout=60, check=False)


def padded_clip(source: Path, target: Path, size: int, seed: int) -> Path:
    """A valid clip grown to ``size`` bytes with a top-level ``free`` box of seeded noise
    (distinct content per seed, so dedupe keeps every file apart)."""
    data = source.read_bytes()
    pad = size - len(data) - 8
    target.write_bytes(data + struct.pack(">I4s", pad + 8, b"free")
                       + random.Random(seed).randbytes(pad))
    return target


def drop(daemon, source: Path, name: str) -> None:
    """Appear in the inbox whole, as a finished copy would (rename within a filesystem)."""
    staging = daemon.root / "staging"
    staging.mkdir(exist_ok=True)
    shutil.copy(source, staging / name)
    (staging / name).rename(daemon.inbox / name)


# -- issue 11 item 3: the API key goes only to the configured API host ------------------

def test_a_redirect_pauses_uploads_naming_the_host_and_the_other_host_sees_nothing(
        daemon, fake_api, elsewhere, valid_clip):
    daemon.start()
    other_host = elsewhere.base_url.split("/")[2]
    fake_api.redirect_to(elsewhere.base_url, status=307)
    drop(daemon, valid_clip, "moved.mp4")
    wait_for(lambda: "uploads paused" in daemon.log(), timeout=30, what="the redirect pause")
    log = daemon.log()
    assert other_host in log and "api.base_url" in log
    assert (daemon.inbox / "moved.mp4").exists() and not list(daemon.failed.iterdir())
    assert elsewhere.requests == []  # no key, no body, not even a request
    fake_api.redirect_to(None)  # the front is fixed: the pause check notices by itself
    side = daemon.sidecar(daemon.wait_done("moved.mp4", timeout=30))
    assert side["status"] == "ready" and len(fake_api.tasks) == 1
    assert elsewhere.requests == []


def test_a_redirect_at_start_is_a_configuration_error_naming_api_base_url(
        daemon, fake_api, elsewhere):
    fake_api.redirect_to(elsewhere.base_url, status=302)
    result = run_once(daemon)
    assert result.returncode == 78, result.stderr
    assert "api.base_url:" in result.stderr
    assert elsewhere.base_url.split("/")[2] in result.stderr
    assert elsewhere.requests == []


def test_base_url_must_be_https_except_for_a_loopback_host(daemon):
    daemon.settings["api"]["base_url"] = "http://api.example.com/v1.3"
    result = run_once(daemon, "check-config")
    assert result.returncode == 78, result.stdout + result.stderr
    assert ("api.base_url: must start with https:// (plain http:// is allowed only for a "
            "loopback host") in result.stderr
    for url in ("http://127.0.0.1:8080/v1.3", "http://localhost/v1.3", "http://[::1]:9/v1",
                "https://api.twelvelabs.io/v1.3"):
        config = parse_config({"api": {"base_url": url},
                               "folders": [{"path": "/in", "index_id": "i"}]},
                              base_dir=Path("/"), env={})
        assert config.api.base_url == url
    with pytest.raises(ConfigError, match=r"api.base_url"):
        parse_config({"api": {"base_url": "http://10.0.0.1/v1.3"},
                      "folders": [{"path": "/in", "index_id": "i"}]}, base_dir=Path("/"),
                     env={})


# -- issue 11 item 4: no request storms ------------------------------------------------

@pytest.mark.parametrize("hint", ["Retry-After: 0", "X-Ratelimit-Reset in the past"])
def test_a_zero_or_past_server_hint_does_not_cause_a_request_storm(daemon, fake_api,
                                                                   valid_clip, hint):
    headers = ({"Retry-After": "0"} if hint.startswith("Retry") else
               {"X-Ratelimit-Reset": str(int(time.time()) - 120)})
    fake_api.inject("POST", "/tasks", status=429, headers=headers, times=100_000)
    daemon.start()
    drop(daemon, valid_clip, "storm.mp4")
    wait_for(lambda: fake_api.count("POST", "/tasks"), timeout=30, what="the first POST")
    time.sleep(8.0)  # measuring a rate: what counts is how many requests fit in 8 s
    posts = fake_api.count("POST", "/tasks")
    # A floor of about 1 s doubling with repeats: 0, ~1, ~3, ~7 s. Today: hundreds.
    assert posts <= 5, f"{posts} POSTs in 8 s"
    fake_api.clear_faults()
    daemon.wait_done("storm.mp4", timeout=60)
    assert len(fake_api.tasks) == 1


# -- issue 11 item 5: no request can hold a thread forever --------------------------------

def test_status_answers_trickled_byte_by_byte_do_not_block_the_poller(daemon, fake_api,
                                                                      distinct_clips):
    first, second = distinct_clips(2)
    fake_api.set_progression((("indexing", 0.0), ("ready", 0.2)))
    daemon.start()
    fake_api.inject("GET", "/tasks", action="trickle", delay=2.0, times=2)
    drop(daemon, first, "one.mp4")
    drop(daemon, second, "two.mp4")
    # io_timeout 10 s and connect 2 s: each trickled answer is given up after 12 s.
    for name in ("one.mp4", "two.mp4"):
        daemon.wait_done(name, timeout=90)
    assert "within 12s" in daemon.log()


# -- issue 12 item 1: a rate-limit storm slows ingest; it never freezes it ---------------

def test_a_used_up_upload_rate_limit_is_waited_out_not_spent(daemon, fake_api,
                                                             distinct_clips):
    # One worker: with several, a request already in flight when the API answers
    # "Remaining: 0" to another one cannot be called back.
    limiter = fake_api.rate_limit("POST", "/tasks", limit=2, window=3.0)
    daemon.start()
    clips = distinct_clips(6)
    for n, clip in enumerate(clips):
        drop(daemon, clip, f"limited-{n}.mp4")
    for n in range(len(clips)):
        daemon.wait_done(f"limited-{n}.mp4", timeout=90)
    assert limiter.refused == 0  # not one request was spent to learn the limit was used up
    assert len(fake_api.tasks) == 6


LONGEST_HINT = 3.0
BACKOFF_CAP = 60.0


def test_three_rate_limit_storms_and_random_faults_slow_ingest_but_never_freeze_it(
        daemon, fake_api, valid_clip, tmp_path):
    """Twenty 3 MiB files through three 429 storms of eight requests each (Retry-After,
    X-Ratelimit-Reset, bare 429 with an empty body), 30 % 500s on POST and GET, and a
    connection reset after 1 MiB on 30 % of uploads (seeded: the same requests fail on
    every run). All reach done/ with one task each, well within two minutes."""
    sources = tmp_path / "sources"
    sources.mkdir()
    clips = [padded_clip(valid_clip, sources / f"s{n:02d}.mp4", 3 << 20, seed=n)
             for n in range(20)]
    fake_api.set_progression((("indexing", 0.0), ("ready", 0.5)))
    fake_api.inject_randomly("POST", "/tasks", 0.3, seed=11, action="reset_midbody",
                             after_bytes=1 << 20)
    fake_api.inject_randomly("POST", "/tasks", 0.3, seed=12, status=500,
                             body="<html>Internal Server Error</html>")
    fake_api.inject_randomly("GET", "/", 0.3, seed=13, status=500,
                             body={"code": "internal_error", "message": "try again"})
    daemon.settings["upload_workers"] = 4
    daemon.start()
    started = time.monotonic()
    fake_api.inject("*", "/", status=429, times=8, headers={"Retry-After": "2"},
                    body={"code": "too_many_requests", "message": "slow down"})
    for n, clip in enumerate(clips):
        drop(daemon, clip, f"clip-{n:02d}.mp4")
    wait_for(lambda: len(fake_api.uploads()) >= 6, timeout=100, what="six uploads")
    fake_api.inject("*", "/", status=429, times=8,
                    headers={"X-Ratelimit-Reset": str(int(time.time() + LONGEST_HINT))})
    wait_for(lambda: len(fake_api.uploads()) >= 12, timeout=100, what="twelve uploads")
    fake_api.inject("*", "/", status=429, times=8)  # bare: no hint, no body
    for n in range(20):
        daemon.wait_done(f"clip-{n:02d}.mp4", timeout=max(1.0, 115 - (time.monotonic()
                                                                       - started)))
    took = time.monotonic() - started
    assert took < 120, f"took {took:.0f}s"
    names = Counter(task["filename"] for task in fake_api.tasks.values())
    assert names == Counter({f"clip-{n:02d}.mp4": 1 for n in range(20)})
    assert sum(1 for r in fake_api.requests if r.status == 429) == 24  # every storm hit
    assert sum(1 for r in fake_api.requests if r.method == "POST" and r.status == 0) >= 3
    waits = [float(s) for s in re.findall(r"(?:retrying in|next try in) (\d+)s", daemon.log())]
    assert waits and max(waits) <= LONGEST_HINT + BACKOFF_CAP + 1, max(waits)
    print(f"20 files in {took:.1f}s, {len(waits)} retries, longest wait {max(waits):.0f}s")
