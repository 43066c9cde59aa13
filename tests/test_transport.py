"""The client's transport rules against the fake API (issue 11 items 3-5, issue 12 item 1).

The key goes to the configured host only (no redirect is followed), no request can
hold a thread forever (a total deadline; for uploads a stall deadline), server delays
are capped, and a used-up rate limit is waited out instead of spent.
"""

from __future__ import annotations

import logging
import threading
import time
from email.utils import formatdate

import pytest
import requests

from watcherd import errors
from watcherd.errors import TransientError
from watcherd.simulator import FakeTwelveLabs
from watcherd.twelvelabs.client import TwelveLabsClient, retry_after_seconds


@pytest.fixture
def api():
    with FakeTwelveLabs() as fake:
        yield fake


@pytest.fixture
def elsewhere():
    """Another server the front points at: it must never see a request."""
    with FakeTwelveLabs(api_key="tlk_other") as fake:
        yield fake


def client_for(fake: FakeTwelveLabs, connect: float = 2.0, io: float = 5.0) -> TwelveLabsClient:
    return TwelveLabsClient(fake.base_url, lambda: fake.api_key, connect_timeout=connect,
                            io_timeout=io)


def run_bounded(call, seconds: float):
    """Run ``call`` in a thread; fail (instead of hanging the suite) if it outlives ``seconds``."""
    outcome: dict[str, object] = {}

    def target():
        started = time.monotonic()
        try:
            outcome["value"] = call()
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            outcome["error"] = exc
        outcome["took"] = time.monotonic() - started

    thread = threading.Thread(target=target, name="bounded-call", daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"the call still blocks after {seconds}s"
    return outcome


# -- issue 11 item 3: the API key goes only to the configured API host -------------------

@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_never_followed_and_the_other_host_sees_no_key_and_no_body(
        api, elsewhere, tmp_path, status):
    api.redirect_to(elsewhere.base_url, status=status)
    client = client_for(api)
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\x00video" * 10_000)
    ApiRedirected = getattr(errors, "ApiRedirected", errors.UploadsPaused)
    host = elsewhere.base_url.split("/")[2]
    for call in (lambda: client.get_index("idx_test"), lambda: client.get_task("t1"),
                 lambda: client.create_task(clip, index_id="idx_test")):
        with pytest.raises(ApiRedirected) as caught:
            call()
        assert host in caught.value.describe() and "api.base_url" in caught.value.fix
        assert isinstance(caught.value, errors.UploadsPaused)  # uploads pause, nothing fails
    assert elsewhere.requests == []
    assert api.count("GET", "/") == 2 and api.count("POST", "/tasks") == 1  # each sent once


# -- issue 11 item 5: no request can hold a thread forever --------------------------------

@pytest.mark.e2e  # waits out real deadlines
def test_an_answer_trickled_byte_by_byte_fails_as_a_transient_error_at_the_deadline(api):
    api.inject("GET", "/tasks/", action="trickle", delay=1.0)  # one byte a second, for ever
    client = client_for(api, connect=1.0, io=3.0)  # each read is well within 3 s
    outcome = run_bounded(lambda: client.get_task("t1"), 30)
    assert isinstance(outcome.get("error"), TransientError), outcome
    assert "within 4s" in outcome["error"].describe()
    assert outcome["took"] < 10
    assert client.get_index("idx_test")["_id"] == "idx_test"  # the client still works


@pytest.mark.e2e  # waits out real deadlines
def test_a_trickled_answer_to_an_upload_is_a_transient_error_that_may_have_created_a_task(
        api, tmp_path):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"x" * 300_000)
    api.inject("POST", "/tasks", action="trickle", delay=1.0)
    client = client_for(api, connect=1.0, io=2.0)
    outcome = run_bounded(lambda: client.create_task(clip, index_id="idx_test"), 30)
    error = outcome.get("error")
    assert isinstance(error, TransientError) and error.maybe_created, outcome
    assert "no progress" in error.describe() and outcome["took"] < 10
    assert len(api.tasks) == 1  # the task exists; only the answer never came


@pytest.mark.e2e  # waits out real deadlines
def test_a_slow_but_moving_upload_is_not_cut_by_the_deadline(api, tmp_path):
    """Uploads get a stall deadline on progress, not a total one: 40 MiB read at 4 MiB/s
    takes about 10 s, far more than the 6 s every other request gets. (The I/O timeout
    must outlast the body still in the loopback buffers when the client has sent it.)"""
    clip = tmp_path / "big.mp4"
    with open(clip, "wb") as fh:
        fh.truncate(40 << 20)
    api.inject("POST", "/tasks", action="slow_read", delay=0.25)
    client = client_for(api, connect=2.0, io=4.0)
    outcome = run_bounded(lambda: client.create_task(clip, index_id="idx_test"), 120)
    assert "value" in outcome, outcome
    assert outcome["took"] > 7.0  # longer than the total deadline of other calls
    assert api.uploads()[0].file.size == 40 << 20


# -- issue 11 item 4: server delays are capped and measured by the server's clock --------

class Answer:
    def __init__(self, headers):
        self.headers = requests.structures.CaseInsensitiveDict(headers)


def test_a_server_delay_longer_than_an_hour_is_capped_and_logged(caplog):
    with caplog.at_level(logging.WARNING, logger="watcherd.twelvelabs.client"):
        assert retry_after_seconds(Answer({"Retry-After": "86400"})) == 3600
        assert retry_after_seconds(Answer({"X-Ratelimit-Reset": "1000000"}), now=0) == 3600
    assert caplog.text.count("waiting 3600s at most") == 2
    assert retry_after_seconds(Answer({"Retry-After": "0"})) == 0


def test_a_reset_time_is_measured_by_the_apis_clock_not_ours():
    """The API's clock 100 s behind ours: its reset, 5 s ahead by its clock, is 5 s away."""
    api_now = time.time() - 100
    answer = Answer({"Date": formatdate(api_now, usegmt=True),
                     "X-Ratelimit-Reset": str(int(api_now) + 5)})
    assert retry_after_seconds(answer) == pytest.approx(5, abs=1)


# -- issue 12 item 1: X-Ratelimit-Remaining: 0 means wait for the reset --------------------

@pytest.mark.e2e  # waits out real deadlines
def test_a_used_up_rate_limit_is_waited_out_instead_of_spending_a_request(api):
    limiter = api.rate_limit("GET", "/indexes", limit=2, window=2.0)
    client = client_for(api)
    done, refused_locally = 0, 0
    deadline = time.monotonic() + 30
    while done < 5 and time.monotonic() < deadline:
        try:
            client.get_index("idx_test")
            done += 1
        except TransientError as exc:
            assert exc.retry_after is not None and 0 < exc.retry_after <= 3.5
            refused_locally += 1
            time.sleep(exc.retry_after)
    assert done == 5
    assert limiter.refused == 0  # never asked while the API said nothing was left
    assert refused_locally >= 2 and api.count("GET", "/indexes") == 5
    assert client.list_tasks(index_id="idx_test") == []  # other endpoints are not held
