"""Backoff math and the shared upload gate."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.conftest import FakeClock
from watcherd.backoff import compute_backoff
from watcherd.config import parse_config
from watcherd.errors import AuthError, QuotaError, TransientError
from watcherd.ingest.gate import UploadGate
from watcherd.ingest.pausecheck import PauseCheck


def test_backoff_grows_exponentially_with_jitter_and_a_cap():
    low = [compute_backoff(n, rng=lambda: 0.0) for n in range(1, 12)]
    high = [compute_backoff(n, rng=lambda: 1.0) for n in range(1, 12)]
    assert low[:4] == [1.0, 2.0, 4.0, 8.0]
    assert high[:4] == [2.0, 4.0, 8.0, 16.0]
    assert max(high) == 60.0 and compute_backoff(0) == 0.0  # a minute, not five


def test_a_failure_holds_every_upload_until_its_delay_passes():
    clock, stop = FakeClock(), threading.Event()
    gate = UploadGate(clock=clock, rng=lambda: 1.0)
    assert gate.wait(stop, max_wait=0)
    # The server's delay, plus at most 10 % (at most a second) of jitter.
    assert gate.note_failure(TransientError(429, None, "slow down", retry_after=30)) == 31
    assert not gate.wait(stop, max_wait=0)
    assert "backing off 31s after HTTP 429" in gate.describe()
    clock.now += 31
    assert gate.wait(stop, max_wait=0)
    # Without a server hint, consecutive failures back off exponentially.
    assert gate.note_failure(TransientError(500, None, "boom")) == 2.0
    clock.now += 2
    assert gate.wait(stop, max_wait=0)
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
    assert (snap["state"], snap["until"]) == ("backing_off", 5031.0)
    assert "429" in snap["reason"]
    gate.pause(AuthError(401, "api_key_invalid", "bad key"))
    snap = gate.snapshot(wall_now=5000.0)
    assert (snap["state"], snap["kind"]) == ("paused", "AuthError")
    assert "API key" in snap["fix"] and "401" in snap["reason"]


# -- issue 12 item 1: a rate-limit storm slows ingest, it never freezes it ------------------

def fail_after_wait(gate, clock, error):
    """One worker's turn: through the gate (once its delay passed), then a failure."""
    clock.now += 1000  # far past any delay; the exponent only resets on success
    assert gate.wait(threading.Event(), max_wait=0)
    return gate.note_failure(error)


def test_a_server_delay_is_honoured_exactly_and_does_not_grow_the_exponent():
    clock = FakeClock()
    gate = UploadGate(clock=clock, rng=lambda: 0.5)
    hinted = TransientError(429, "too_many_requests", "slow down", retry_after=2)
    assert [fail_after_wait(gate, clock, hinted) for _ in range(5)] == pytest.approx([2.1] * 5)
    # The five 429s left the backoff where it was: a 500 now starts from the bottom.
    assert fail_after_wait(gate, clock, TransientError(500, None, "boom")) == pytest.approx(1.5)


def test_failures_of_several_workers_in_one_moment_count_as_one_step():
    clock = FakeClock()
    gate = UploadGate(clock=clock, rng=lambda: 1.0)
    admitted, delays = threading.Barrier(4), []

    def worker():
        assert gate.wait(threading.Event(), max_wait=0)
        admitted.wait(5)  # all four requests are in flight together
        delays.append(gate.note_failure(TransientError(503, None, "overloaded")))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert delays == [2.0] * 4  # one step for the four of them
    assert fail_after_wait(gate, clock, TransientError(503, None, "overloaded")) == 4.0


def test_a_success_clears_the_delay_watcherd_chose_but_not_the_one_the_server_gave():
    clock, stop = FakeClock(), threading.Event()
    gate = UploadGate(clock=clock, rng=lambda: 1.0)
    for _ in range(3):
        fail_after_wait(gate, clock, TransientError(500, None, "boom"))
    assert not gate.wait(stop, max_wait=0)
    other = threading.Thread(target=gate.note_success)  # another worker's upload went through
    other.start()
    other.join()
    assert gate.wait(stop, max_wait=0) and gate.describe() is None
    gate.note_failure(TransientError(429, None, "slow down", retry_after=20))
    gate.note_success()
    assert not gate.wait(stop, max_wait=0)
    clock.now += 21
    assert gate.wait(stop, max_wait=0)


def test_the_backoff_for_errors_without_a_hint_is_capped_at_a_minute():
    clock = FakeClock()
    gate = UploadGate(clock=clock, rng=lambda: 1.0)
    delays = [fail_after_wait(gate, clock, TransientError(None, None, "reset")) for _ in range(12)]
    assert delays[:3] == [2.0, 4.0, 8.0] and max(delays) == 60.0


@pytest.mark.parametrize("hint", [0.0, 0.3])
def test_a_zero_or_past_server_hint_still_waits_a_floor_that_grows_with_repeats(hint):
    """Retry-After: 0, or an X-Ratelimit-Reset already past by our clock (issue 11 item 4)."""
    clock = FakeClock()
    gate = UploadGate(clock=clock, rng=lambda: 0.0)  # the shortest the jitter allows
    zero = TransientError(429, None, "slow down", retry_after=hint)
    delays = [fail_after_wait(gate, clock, zero) for _ in range(4)]
    assert delays == [0.75, 1.5, 3.0, 6.0]
    gate.note_success()
    assert fail_after_wait(gate, clock, zero) == 0.75


def test_uploads_wait_while_the_api_says_the_upload_rate_limit_is_used_up():
    from watcherd.twelvelabs.ratelimit import UPLOAD_ENDPOINT, RateWindow  # new in issue 12

    clock, stop = FakeClock(), threading.Event()
    window = RateWindow(clock=clock)
    gate = UploadGate(clock=clock, window=window)
    window.close("GET /tasks", 50)  # another endpoint's limit does not hold uploads
    assert gate.wait(stop, max_wait=0)
    window.close(UPLOAD_ENDPOINT, 10)
    assert not gate.wait(stop, max_wait=0)
    assert "rate limit for uploads is used up" in gate.describe()
    assert gate.snapshot(wall_now=100.0)["until"] == 110.0
    clock.now += 10
    assert gate.wait(stop, max_wait=0)
