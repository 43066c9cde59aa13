"""The Twelve Labs client against the fake API: streaming, shapes, error types."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap

import pytest
import requests

from watcherd.errors import ApiRejected, AuthError, QuotaError, TransientError
from watcherd.simulator import FakeTwelveLabs
from watcherd.twelvelabs.client import (
    TwelveLabsClient,
    UploadAborted,
    classify_response,
    retry_after_seconds,
)


@pytest.fixture
def api():
    with FakeTwelveLabs() as fake:
        yield fake


def client_for(fake: FakeTwelveLabs, key: str | None = None, io_timeout: float = 5.0):
    return TwelveLabsClient(fake.base_url, lambda: key or fake.api_key, io_timeout=io_timeout)


def test_create_task_streams_the_file_with_the_documented_fields(api, tmp_path):
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"\x00video" * 50_000)
    progress: list[tuple[int, int]] = []
    created = client_for(api).create_task(
        path, index_id="idx_test", user_metadata={"sha256": "abc"},
        on_progress=lambda done, total: progress.append((done, total)))
    assert set(created) >= {"_id", "video_id"}
    (upload,) = api.uploads()
    assert upload.headers["x-api-key"] == api.api_key
    assert upload.fields["index_id"] == "idx_test"
    assert json.loads(upload.fields["user_metadata"]) == {"sha256": "abc"}
    assert "language" not in upload.fields
    assert upload.file.filename == "clip.mp4"
    assert upload.file.size == path.stat().st_size
    assert upload.file.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert progress[-1][0] == progress[-1][1]


def test_language_is_sent_only_when_configured(api, tmp_path):
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"x" * 1000)
    client_for(api).create_task(path, index_id="idx_test", language="en")
    assert api.uploads()[0].fields["language"] == "en"


def test_get_and_list_tasks(api, tmp_path):
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"x" * 1000)
    client = client_for(api)
    created = client.create_task(path, index_id="idx_test")
    task = client.get_task(created["_id"])
    assert task["_id"] == created["_id"] and task["index_id"] == "idx_test"
    listed = client.list_tasks(index_id="idx_test", filename="clip.mp4",
                               created_at="2000-01-01T00:00:00Z")
    assert [t["_id"] for t in listed] == [created["_id"]]
    assert client.list_tasks(index_id="idx_test", filename="other.mp4") == []
    assert client.get_index("idx_test")["_id"] == "idx_test"


def test_errors_map_to_the_types_that_decide_policy(api, tmp_path):
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"x" * 1000)
    with pytest.raises(AuthError) as auth:
        client_for(api, key="tlk_wrong").get_index("idx_test")
    assert auth.value.status == 401 and auth.value.code == "api_key_invalid"
    with pytest.raises(ApiRejected) as missing:
        client_for(api).create_task(path, index_id="no_such_index")
    assert missing.value.code == "resource_not_exist"
    api.inject("POST", "/tasks", status=400, body={
        "code": "video_duration_too_short", "message": "The video is too short."})
    with pytest.raises(ApiRejected) as short:
        client_for(api).create_task(path, index_id="idx_test")
    assert "video_duration_too_short" in short.value.describe()
    api.inject("POST", "/tasks", status=400, body={"code": "usage_limit_exceeded",
                                                  "message": "Not enough free credit."})
    with pytest.raises(QuotaError):
        client_for(api).create_task(path, index_id="idx_test")


@pytest.mark.parametrize("status, body, headers", [
    (429, None, {"Retry-After": "7"}),
    (500, "<html>Internal Server Error</html>", {}),
    (503, None, {}),
    (408, "", {}),
])
def test_retryable_answers_become_transient_errors_even_with_odd_bodies(api, status, body,
                                                                         headers):
    api.inject("GET", "/indexes", status=status, body=body, headers=headers)
    with pytest.raises(TransientError) as caught:
        client_for(api).get_index("idx_test")
    assert caught.value.status == status
    if "Retry-After" in headers:
        assert caught.value.retry_after == 7.0


def test_a_dropped_connection_after_the_body_was_sent_may_have_created_a_task(api, tmp_path):
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"x" * 200_000)
    api.inject("POST", "/tasks", action="create_then_reset")
    with pytest.raises(TransientError) as caught:
        client_for(api).create_task(path, index_id="idx_test")
    assert caught.value.maybe_created
    assert len(api.tasks) == 1


@pytest.mark.parametrize("status, may_exist", [(429, False), (408, False), (500, True),
                                               (503, True)])
def test_only_an_answer_that_refused_the_request_rules_a_created_task_out(api, tmp_path,
                                                                          status, may_exist):
    """A 408/429 refuses the request; a 5xx after the whole body may hide a created task."""
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"x" * 200_000)
    api.inject("POST", "/tasks", status=status, body=None)
    with pytest.raises(TransientError) as caught:
        client_for(api).create_task(path, index_id="idx_test")
    assert caught.value.maybe_created is may_exist


def test_an_answer_before_the_body_was_read_leaves_no_task_to_look_for(api, tmp_path):
    """The API refused before reading: a body too big for the socket buffers never ended."""
    path = tmp_path / "big.mp4"
    with open(path, "wb") as fh:
        fh.truncate(32 << 20)
    api.inject("POST", "/tasks", status=500, body=None, action="early")
    with pytest.raises(TransientError) as caught:
        client_for(api).create_task(path, index_id="idx_test")
    assert caught.value.maybe_created is False and api.tasks == {}


def test_videos_are_listed_across_pages_and_read_one_by_one(api, tmp_path, monkeypatch):
    api.set_progression((("ready", 0.0),))
    path = tmp_path / "rec.mp4"
    path.write_bytes(b"x" * 1000)
    client = client_for(api)
    created = [client.create_task(path, index_id="idx_test", user_metadata={"sha256": str(n)})
               for n in range(3)]
    listed = client.list_videos(index_id="idx_test", filename="rec.mp4")
    assert [v["user_metadata"]["sha256"] for v in listed] == ["2", "1", "0"]  # newest first
    pages = [r.query["page"] for r in api.requests if r.path.endswith("/videos")]
    assert pages == [["1"]]
    monkeypatch.setattr("watcherd.twelvelabs.client.LIST_PAGE_LIMIT", 2)
    assert len(client.list_videos(index_id="idx_test", filename="rec.mp4")) == 3
    video = client.get_video("idx_test", created[0]["video_id"])
    assert video["user_metadata"] == {"sha256": "0"}
    with pytest.raises(ApiRejected):
        client.get_video("idx_test", "no_such_video")


def test_a_read_timeout_is_transient(api):
    api.inject("GET", "/indexes", status=200, delay=1.5)
    with pytest.raises(TransientError, match="timed out"):
        client_for(api, io_timeout=0.3).get_index("idx_test")


def test_an_upload_can_be_aborted_half_way(api, tmp_path):
    path = tmp_path / "big.mp4"
    with open(path, "wb") as fh:
        fh.truncate(8 << 20)
    calls = []
    with pytest.raises(UploadAborted):
        client_for(api).create_task(path, index_id="idx_test",
                                    should_abort=lambda: calls.append(1) or len(calls) > 2)
    assert api.tasks == {}


class FakeResponse:
    def __init__(self, status, headers=None, body=b""):
        self.status_code = status
        self.headers = requests.structures.CaseInsensitiveDict(headers or {})
        self.content = body
        self.text = body.decode()
        self.reason = "Reason"

    def json(self):
        return json.loads(self.content)


def test_retry_after_accepts_seconds_http_dates_and_ratelimit_reset():
    assert retry_after_seconds(FakeResponse(429, {"Retry-After": "12"})) == 12
    date = FakeResponse(429, {"Retry-After": "Thu, 01 Jan 1970 00:01:40 GMT"})
    assert retry_after_seconds(date, now=40.0) == 60.0
    assert retry_after_seconds(FakeResponse(429, {"X-Ratelimit-Reset": "130"}), now=100) == 30
    assert retry_after_seconds(FakeResponse(429, {"Retry-After": "soon"})) is None


def test_nested_error_bodies_are_understood():
    nested = FakeResponse(413, body=json.dumps({"error": {"code": "too_large",
                                                          "message": "big"}}).encode())
    error = classify_response(nested, "POST /tasks")
    assert isinstance(error, ApiRejected) and error.code == "too_large"


def test_peak_memory_does_not_grow_with_file_size(api, tmp_path):
    """A 256 MiB upload must not be buffered (requests' files= would hold it twice)."""
    path = tmp_path / "big.mp4"
    with open(path, "wb") as fh:
        fh.truncate(256 << 20)
    # VmHWM, not ru_maxrss: a child's ru_maxrss starts at the forking parent's peak
    # (pytest's, which grows with the suite), VmHWM belongs to the new process image.
    script = textwrap.dedent(f"""
        from watcherd.twelvelabs.client import TwelveLabsClient
        client = TwelveLabsClient({api.base_url!r}, lambda: {api.api_key!r})
        client.create_task({str(path)!r}, index_id="idx_test")
        with open("/proc/self/status") as status:
            kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
        print(kib // 1024)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    peak_mib = int(result.stdout.strip())
    assert peak_mib < 100, f"peak RSS {peak_mib} MiB for a 256 MiB upload"
    assert api.uploads()[0].file.size == 256 << 20
