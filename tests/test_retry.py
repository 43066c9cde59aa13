"""Backoff math and the shared upload gate."""

from __future__ import annotations

import threading
from pathlib import Path

from tests.conftest import FakeClock
from watcherd.config import parse_config
from watcherd.errors import AuthError, QuotaError, TransientError
from watcherd.pausecheck import PauseCheck
from watcherd.retry import UploadGate, compute_backoff


def test_backoff_grows_exponentially_with_jitter_and_a_cap():
    low = [compute_backoff(n, rng=lambda: 0.0) for n in range(1, 12)]
    high = [compute_backoff(n, rng=lambda: 1.0) for n in range(1, 12)]
    assert low[:4] == [1.0, 2.0, 4.0, 8.0]
    assert high[:4] == [2.0, 4.0, 8.0, 16.0]
    assert max(high) == 300.0 and compute_backoff(0) == 0.0


def test_a_failure_holds_every_upload_until_its_delay_passes():
    clock, stop = FakeClock(), threading.Event()
    gate = UploadGate(clock=clock, rng=lambda: 1.0)
    assert gate.wait(stop, max_wait=0)
    assert gate.note_failure(TransientError(429, None, "slow down", retry_after=30)) == 30
    assert not gate.wait(stop, max_wait=0)
    assert "backing off 30s after HTTP 429" in gate.describe()
    clock.now += 31
    assert gate.wait(stop, max_wait=0)
    # Without a server hint, consecutive failures back off exponentially.
    assert gate.note_failure(TransientError(500, None, "boom")) == 4.0
    gate.note_success()
    clock.now += 5
    assert gate.note_failure(TransientError(500, None, "boom")) == 2.0


def test_pause_blocks_until_resumed():
    gate, stop = UploadGate(), threading.Event()
    assert gate.pause(AuthError(401, "api_key_invalid", "bad key"))
    assert not gate.pause(AuthError(401, "api_key_invalid", "bad key"))  # already paused
    assert not gate.wait(stop, max_wait=0.01)
    assert gate.describe().startswith("paused: HTTP 401 api_key_invalid")
    gate.resume()
    assert gate.wait(stop, max_wait=0.01)


class IndexApi:
    def __init__(self, error=None):
        self.error, self.calls = error, 0

    def get_index(self, index_id):
        self.calls += 1
        if self.error:
            raise self.error
        return {"_id": index_id}


def pause_check(api, clock):
    config = parse_config({"pause_check_seconds": 60, "folders": [
        {"path": "/a", "index_id": "i1"}, {"path": "/b", "index_id": "i2"}]},
        base_dir=Path("/"), env={})
    return PauseCheck(config=config, api=api, gate=UploadGate(), clock=clock)


def test_a_key_pause_is_lifted_once_every_index_answers():
    clock, api = FakeClock(), IndexApi(AuthError(401, "api_key_invalid", "expired"))
    check = pause_check(api, clock)
    check.gate.pause(AuthError(401, "api_key_invalid", "expired"))
    check.check()          # the pause begins: first check in 60 s
    clock.now += 61
    check.check()
    assert api.calls == 1 and check.gate.paused is not None
    api.error = None       # the operator fixed the key
    clock.now += 30
    check.check()
    assert api.calls == 1  # not yet due
    clock.now += 31
    check.check()
    assert api.calls == 3 and check.gate.paused is None  # both indexes checked


def test_a_quota_pause_retries_uploads_ten_times_less_often():
    clock, api = FakeClock(), IndexApi()
    check = pause_check(api, clock)
    check.gate.pause(QuotaError(400, "usage_limit_exceeded", "no credit"))
    check.check()
    clock.now += 599
    check.check()
    assert check.gate.paused is not None
    clock.now += 2
    check.check()
    assert check.gate.paused is None and api.calls == 0


def test_gate_snapshot_says_running_backing_off_until_when_or_paused_with_the_fix():
    clock = FakeClock()
    gate = UploadGate(clock=clock, rng=lambda: 1.0)
    assert gate.snapshot(wall_now=5000.0)["state"] == "running"
    gate.note_failure(TransientError(429, "too_many_requests", "slow down", retry_after=30))
    snap = gate.snapshot(wall_now=5000.0)
    assert (snap["state"], snap["until"]) == ("backing_off", 5030.0)
    assert "429" in snap["reason"]
    gate.pause(AuthError(401, "api_key_invalid", "bad key"))
    snap = gate.snapshot(wall_now=5000.0)
    assert (snap["state"], snap["kind"]) == ("paused", "AuthError")
    assert "API key" in snap["fix"] and "401" in snap["reason"]
