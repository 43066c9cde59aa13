"""The fake Twelve Labs API itself, driven the way the real client drives it.

requests + urllib3's ``encode_multipart_formdata`` over real loopback sockets, so a
parser or framing bug in the fake shows up here rather than as a puzzling daemon test.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import requests
from urllib3.filepost import encode_multipart_formdata

from watcherd.simulator import FakeTwelveLabs
from watcherd.twelvelabs.body import MultipartBody, RangedFileReader

pytestmark = pytest.mark.timeout(30)

HEX24 = re.compile(r"^[0-9a-f]{24}$")
RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
QUICK = (("validating", 0.0), ("indexing", 0.05), ("ready", 0.1))
SLOW = (("validating", 0.0), ("indexing", 60.0), ("ready", 120.0))  # frozen for a test's life
NOW_READY = (("validating", 0.0), ("ready", 0.0))


@pytest.fixture
def api() -> Iterator[FakeTwelveLabs]:
    with FakeTwelveLabs(indexes=("idx_test", "idx_other")) as fake:
        yield fake
    assert fake.errors == [], "the fake itself crashed:\n" + "\n".join(fake.errors)


@pytest.fixture
def session() -> Iterator[requests.Session]:
    """One keep-alive connection: proves every answer leaves the stream in sync."""
    with requests.Session() as s:
        yield s


def post_task(api: FakeTwelveLabs, content: bytes = b"video", *,
              filename: str = "clip.mp4", index_id: str | None = "idx_test",
              key: str | None = None, session: requests.Session | None = None,
              boundary: str | None = None, **extra: str) -> requests.Response:
    fields: dict = dict(extra)
    if index_id is not None:
        fields["index_id"] = index_id
    fields["video_file"] = (filename, content, "video/mp4")
    body, content_type = encode_multipart_formdata(fields, boundary=boundary)
    return (session or requests).post(
        api.base_url + "/tasks", data=body, timeout=10,
        headers={"Content-Type": content_type, "x-api-key": key or api.api_key})


def get(api: FakeTwelveLabs, path: str, session: requests.Session | None = None,
        **params) -> requests.Response:
    return (session or requests).get(api.base_url + path, params=params, timeout=10,
                                     headers={"x-api-key": api.api_key})


def tricky_content(size: int, boundary: bytes) -> bytes:
    """Random bytes plus near-miss delimiters, some straddling the 1 MiB read pieces.

    Seeded: with fresh random bytes, the byte after a truncated delimiter could
    complete it (1 in 256) and turn the near miss into a real boundary.
    """
    data = bytearray(random.Random(size).randbytes(size))
    near_misses = [b"\r\n--" + boundary[:-1], b"--" + boundary, b"\r\n-" + boundary,
                   b"\r\n--" + boundary[:5]]
    for at, fake in zip([10, 1000, (1 << 20) - 3, (2 << 20) - 7, size - 40], near_misses * 2,
                       strict=False):
        data[at:at + len(fake)] = fake
    return bytes(data)


def test_upload_records_fields_size_sha256_and_creates_a_task(api):
    content = tricky_content(3 << 20, b"xyzBOUNDARYxyz")
    meta = json.dumps({"sha256": "abc", "n": 1})
    response = post_task(api, content, filename="clip one.mp4", boundary="xyzBOUNDARYxyz",
                         user_metadata=meta, language="en", enable_video_stream="false")
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"_id", "video_id"}
    assert HEX24.match(body["_id"]) and HEX24.match(body["video_id"])
    assert body["_id"] != body["video_id"]
    (upload,) = api.uploads()
    assert upload.task_id == body["_id"] and upload.status == 200
    assert upload.path == "/v1.3/tasks" and upload.headers["x-api-key"] == api.api_key
    assert upload.fields == {"user_metadata": meta, "language": "en",
                             "enable_video_stream": "false", "index_id": "idx_test"}
    assert upload.file is not None
    assert (upload.file.field, upload.file.filename, upload.file.content_type) == (
        "video_file", "clip one.mp4", "video/mp4")
    assert upload.file.size == len(content)
    assert upload.file.sha256 == hashlib.sha256(content).hexdigest()
    task = api.tasks[body["_id"]]
    assert task["video_id"] == body["video_id"] and task["filename"] == "clip one.mp4"
    assert task["user_metadata"] == {"sha256": "abc", "n": 1}


@pytest.mark.parametrize("short_of_a_piece", [1, 2, 8, 15, 16, 17])
def test_a_delimiter_straddling_two_read_pieces_is_found(api, short_of_a_piece):
    """The fake reads 1 MiB pieces; put the closing delimiter across a piece edge."""
    boundary = "straddle0123"  # the delimiter "\r\n--straddle0123" is 16 bytes

    def encode(size: int) -> tuple[bytes, bytes]:
        content = os.urandom(size)
        body, _ = encode_multipart_formdata({"index_id": "idx_test",
                                             "video_file": ("s.mp4", content, "video/mp4")},
                                            boundary=boundary)
        return content, body

    content, raw = encode(1000)
    overhead = raw.index(content)
    content, raw = encode((1 << 20) - short_of_a_piece - overhead)
    assert raw.index(b"\r\n--" + boundary.encode(), overhead) == (1 << 20) - short_of_a_piece
    response = requests.post(api.base_url + "/tasks", data=raw, timeout=10, headers={
        "Content-Type": f"multipart/form-data; boundary={boundary}", "x-api-key": api.api_key})
    assert response.status_code == 200, response.text
    (upload,) = api.uploads()
    assert upload.file.size == len(content)
    assert upload.file.sha256 == hashlib.sha256(content).hexdigest()


def test_store_dir_keeps_the_uploaded_bytes(tmp_path):
    content = os.urandom(200_000)
    with FakeTwelveLabs(store_dir=tmp_path / "store") as api:
        task_id = post_task(api, content).json()["_id"]
        assert post_task(api, b"", filename="empty.mp4").status_code == 400
    assert [p.name for p in (tmp_path / "store").iterdir()] == [f"{task_id}.bin"]
    assert (tmp_path / "store" / f"{task_id}.bin").read_bytes() == content


def test_a_wrong_or_missing_key_is_401_json_even_for_a_big_upload(api, session):
    for headers in ({}, {"x-api-key": "tlk_wrong"}):
        response = session.get(api.base_url + "/indexes/idx_test", headers=headers, timeout=10)
        assert response.status_code == 401
        assert response.json()["code"] == "api_key_invalid"
        assert "invalid or expired" in response.json()["message"]
    # The body is drained before answering: the client sees the 401, not a broken pipe.
    response = post_task(api, os.urandom(4 << 20), key="tlk_wrong", session=session)
    assert response.status_code == 401 and api.tasks == {}
    api.api_key = "tlk_rotated"
    assert post_task(api, key="tlk_test_key", session=session).status_code == 401
    assert post_task(api, key="tlk_rotated", session=session).status_code == 200
    assert [r.status for r in api.requests] == [401, 401, 401, 401, 200]


def test_validation_errors_use_the_documented_codes(api, session):
    def code(response: requests.Response, status: int) -> str:
        assert response.status_code == status, response.text
        assert response.headers["Content-Type"].startswith("application/json")
        return response.json()["code"]

    unknown = post_task(api, index_id="idx_nope", session=session)
    assert code(unknown, 400) == "resource_not_exist"
    assert unknown.json()["message"] == "Resource with id `idx_nope` does not exist in `indexes`."
    assert code(post_task(api, index_id=None, session=session), 400) == "parameter_not_provided"
    no_file, no_file_type = encode_multipart_formdata({"index_id": "idx_test",
                                                       "video_file": "not a file"})
    assert code(session.post(api.base_url + "/tasks", data=no_file, timeout=10, headers={
        "Content-Type": no_file_type, "x-api-key": api.api_key}),
        400) == "parameter_not_provided"
    assert code(post_task(api, b"", session=session), 400) == "video_file_broken"
    as_json = session.post(api.base_url + "/tasks", json={"index_id": "idx_test"}, timeout=10,
                           headers={"x-api-key": api.api_key})
    assert code(as_json, 400) == "parameter_invalid"
    truncated = b"--b\r\nContent-Disposition: form-data; name=\"index_id\"\r\n\r\nidx_test"
    assert code(session.post(api.base_url + "/tasks", data=truncated, timeout=10, headers={
        "Content-Type": "multipart/form-data; boundary=b", "x-api-key": api.api_key}),
        400) == "parameter_invalid"
    assert code(get(api, "/tasks/" + "0" * 24, session), 404) == "resource_not_exist"
    assert code(get(api, "/indexes/idx_nope", session), 404) == "resource_not_exist"
    assert code(get(api, "/nothing/here", session), 404) == "not_found"
    wrong_version = session.get(api.base_url.replace("v1.3", "v1.2") + "/tasks/x", timeout=10,
                                headers={"x-api-key": api.api_key})
    assert code(wrong_version, 404) == "not_found"
    assert api.tasks == {} and api.uploads() == []
    index = get(api, "/indexes/idx_other", session).json()
    assert index["_id"] == "idx_other"
    assert index["models"] == [{"model_name": "marengo3.0", "model_options": ["visual", "audio"]}]


def test_each_index_lists_the_models_it_is_given(api, session):
    api.index_models["idx_other"] = ["marengo2.7", "pegasus1.2"]
    index = get(api, "/indexes/idx_other", session).json()
    assert [m["model_name"] for m in index["models"]] == ["marengo2.7", "pegasus1.2"]
    assert [m["model_name"] for m in get(api, "/indexes/idx_test", session).json()["models"]] \
        == ["marengo3.0"]


def test_chunked_uploads_are_parsed_too(api):
    content = os.urandom((1 << 20) + 12345)
    raw, content_type = encode_multipart_formdata(
        {"index_id": "idx_test", "video_file": ("chunked.mp4", content, "video/mp4")})
    pieces = (raw[i:i + 100_000] for i in range(0, len(raw), 100_000))  # no length: chunked
    response = requests.post(api.base_url + "/tasks", data=pieces, timeout=10, headers={
        "Content-Type": content_type, "x-api-key": api.api_key})
    assert response.status_code == 200, response.text
    (upload,) = api.uploads()
    assert upload.headers["transfer-encoding"] == "chunked"
    assert upload.file.size == len(content)
    assert upload.file.sha256 == hashlib.sha256(content).hexdigest()


def test_a_task_progresses_to_ready_in_the_v13_shape(api, session):
    api.set_progression(QUICK)
    task_id = post_task(api, session=session).json()["_id"]
    seen = []
    while not seen or seen[-1]["status"] != "ready":
        seen.append(get(api, f"/tasks/{task_id}", session).json())
        assert len(seen) < 200
        time.sleep(0.01)
    order = [name for name, _ in QUICK]
    statuses = [order.index(t["status"]) for t in seen]
    assert statuses == sorted(statuses)  # never goes backwards
    ready = seen[-1]
    assert set(ready) == {"_id", "index_id", "video_id", "status", "created_at", "updated_at",
                          "system_metadata", "hls"}
    assert ready["system_metadata"] == {"filename": "clip.mp4", "duration": None,
                                        "width": None, "height": None}
    assert RFC3339_MS.match(ready["created_at"]) and RFC3339_MS.match(ready["updated_at"])
    created, updated = (datetime.fromisoformat(ready[k]) for k in ("created_at", "updated_at"))
    assert updated - created == timedelta(seconds=0.1)  # the moment it turned ready
    assert ready["video_id"] == api.tasks[task_id]["video_id"]


def test_set_progression_applies_to_existing_tasks(api):
    api.set_progression(SLOW)
    task_id = post_task(api).json()["_id"]
    assert get(api, f"/tasks/{task_id}").json()["status"] == "validating"
    api.set_progression((("validating", 0.0), ("indexing", 0.0), ("ready", 60.0)))
    assert get(api, f"/tasks/{task_id}").json()["status"] == "indexing"
    api.set_progression(NOW_READY)
    assert get(api, f"/tasks/{task_id}").json()["status"] == "ready"
    with pytest.raises(ValueError):
        api.set_progression((("ready", 1.0), ("validating", 0.0)))


def test_fail_filenames_ends_in_failed_with_error_reason(api):
    api.set_progression(SLOW)
    api.fail_filenames(["doomed.mp4"], error_reason="The video could not be indexed.")
    doomed = post_task(api, filename="doomed.mp4").json()["_id"]
    fine = post_task(api, filename="fine.mp4").json()["_id"]
    assert get(api, f"/tasks/{doomed}").json()["status"] == "validating"  # fails only at the end
    api.set_progression(NOW_READY)
    failed = get(api, f"/tasks/{doomed}").json()
    assert failed["status"] == "failed"
    assert failed["error_reason"] == "The video could not be indexed."
    ready = get(api, f"/tasks/{fine}").json()
    assert ready["status"] == "ready" and "error_reason" not in ready


def test_list_filters_sorting_and_paging(api, session):
    api.set_progression((("ready", 0.0),))
    api.fail_filenames(["b.mp4"])
    ids = {}
    for name, index in (("a.mp4", "idx_test"), ("b.mp4", "idx_test"), ("c.mp4", "idx_other")):
        ids[name] = post_task(api, filename=name, index_id=index, session=session).json()["_id"]
        time.sleep(0.005)  # distinct milliseconds

    def listed(**params) -> list[str]:
        response = get(api, "/tasks", session, **params)
        assert response.status_code == 200, response.text
        names = {v: k for k, v in ids.items()}
        return [names[t["_id"]] for t in response.json()["data"]]

    assert listed() == ["c.mp4", "b.mp4", "a.mp4"]  # default: newest first
    assert listed(sort_option="asc") == ["a.mp4", "b.mp4", "c.mp4"]
    assert listed(index_id="idx_test") == ["b.mp4", "a.mp4"]
    assert listed(filename="a.mp4") == ["a.mp4"]
    assert listed(filename="a") == []  # exact match, not partial
    assert listed(status="failed") == ["b.mp4"]
    assert listed(status=["ready", "failed"], index_id="idx_test") == ["b.mp4", "a.mp4"]
    second = api.tasks[ids["b.mp4"]]["created_at"]
    assert listed(created_at=second) == ["c.mp4", "b.mp4"]  # at or after
    assert listed(created_at=second.replace("Z", "+00:00"), sort_option="asc") == [
        "b.mp4", "c.mp4"]
    assert listed(created_at="2999-01-01T00:00:00Z") == []
    page = get(api, "/tasks", session, page_limit=2, page=2).json()
    assert [t["_id"] for t in page["data"]] == [ids["a.mp4"]]
    assert page["page_info"] == {"limit_per_page": 2, "page": 2, "total_page": 2,
                                 "total_results": 3}
    assert get(api, "/tasks", session).json()["page_info"]["limit_per_page"] == 10
    assert get(api, "/tasks", session, page_limit=50).status_code == 200
    for bad in ({"page_limit": 51}, {"page": 0}, {"created_at": "yesterday"},
                {"sort_option": "up"}):
        response = get(api, "/tasks", session, **bad)
        assert response.status_code == 400 and response.json()["code"] == "parameter_invalid"


def test_videos_exist_once_indexed_and_carry_the_user_metadata_sent(api, session):
    api.set_progression(QUICK)
    meta = {"sha256": "ab" * 32, "watcherd_file_id": 7}
    first = post_task(api, filename="rec.mp4", user_metadata=json.dumps(meta),
                      session=session).json()
    time.sleep(0.005)
    second = post_task(api, filename="rec.mp4", session=session).json()
    post_task(api, filename="other.mp4", session=session)
    path = f"/indexes/idx_test/videos/{first['video_id']}"
    early = get(api, path, session)
    assert early.status_code == 404 and early.json()["code"] == "resource_not_exist"
    assert get(api, "/indexes/idx_test/videos", session).json()["data"] == []
    time.sleep(0.15)
    video = get(api, path, session).json()
    assert video["_id"] == first["video_id"] and video["user_metadata"] == meta
    assert video["system_metadata"]["filename"] == "rec.mp4" and RFC3339_MS.match(
        video["indexed_at"])
    listed = get(api, "/indexes/idx_test/videos", session, filename="rec.mp4").json()
    assert [v["_id"] for v in listed["data"]] == [second["video_id"], first["video_id"]]
    assert listed["data"][1]["user_metadata"] == meta
    paged = get(api, "/indexes/idx_test/videos", session, filename="rec.mp4", page_limit=1,
                page=2).json()
    assert [v["_id"] for v in paged["data"]] == [first["video_id"]]
    assert paged["page_info"]["total_page"] == 2
    since = api.tasks[second["_id"]]["created_at"]
    after = get(api, "/indexes/idx_test/videos", session, filename="rec.mp4", created_at=since)
    assert [v["_id"] for v in after.json()["data"]] == [second["video_id"]]
    assert get(api, "/indexes/idx_test/videos", session, page_limit=51).status_code == 400
    assert get(api, "/indexes/idx_other/videos/" + first["video_id"], session).status_code \
        == 404


def test_user_metadata_can_be_hidden_from_lists_or_everywhere(api, session):
    api.set_progression(NOW_READY)
    created = post_task(api, user_metadata=json.dumps({"sha256": "cd" * 32}),
                        session=session).json()
    path = f"/indexes/idx_test/videos/{created['video_id']}"
    api.user_metadata_shown = "video"
    assert "user_metadata" not in get(api, "/indexes/idx_test/videos", session).json()["data"][0]
    assert get(api, path, session).json()["user_metadata"] == {"sha256": "cd" * 32}
    api.user_metadata_shown = "nowhere"
    assert "user_metadata" not in get(api, path, session).json()


def test_the_apis_clock_can_run_behind_ours(api, session):
    api.clock_offset_seconds = -600
    created = post_task(api, session=session).json()
    stamp = datetime.fromisoformat(api.tasks[created["_id"]]["created_at"])
    behind = datetime.now(stamp.tzinfo) - stamp
    assert timedelta(seconds=590) < behind < timedelta(seconds=610)
    five_minutes_ago = (datetime.now(stamp.tzinfo) - timedelta(minutes=5)).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    assert get(api, "/tasks", session, created_at=five_minutes_ago).json()["data"] == []


def test_inject_429_with_an_empty_body_and_rate_limit_headers(api, session):
    api.inject("POST", "/tasks", status=429, headers={"Retry-After": "7",
                                                      "X-Ratelimit-Reset": "1700000000"})
    limited = post_task(api, os.urandom(300_000), session=session)
    assert limited.status_code == 429 and limited.content == b""
    assert limited.headers["Retry-After"] == "7"
    assert limited.headers["X-Ratelimit-Reset"] == "1700000000"
    assert api.tasks == {}
    assert post_task(api, session=session).status_code == 200  # times=1: used up
    assert api.count("POST", "/tasks") == 2 and len(api.uploads()) == 1
    assert [r.status for r in api.requests] == [429, 200]


def test_inject_rules_apply_in_order_to_matching_prefixes_only(api, session):
    task_id = post_task(api, session=session).json()["_id"]
    api.inject("GET", "/tasks/", status=500, body="<html>oops</html>", times=2)
    api.inject("GET", "/tasks/", status=503)
    api.inject("GET", "/idx", status=500)  # a prefix, not a substring of "/indexes/idx_test"
    assert get(api, "/tasks", session).status_code == 200  # "/tasks" lacks the slash
    assert get(api, "/indexes/idx_test", session).status_code == 200
    for status in (500, 500, 503, 200):
        response = get(api, f"/tasks/{task_id}", session)
        assert response.status_code == status
    assert response.json()["_id"] == task_id
    api.inject("GET", "/tasks/", status=500, body="<html>oops</html>")
    broken = get(api, f"/tasks/{task_id}", session)
    assert broken.text == "<html>oops</html>"
    with pytest.raises(ValueError):
        broken.json()
    assert api.count("GET", "/tasks/") == 5 and api.count("GET", "/tasks") == 6
    assert api.count("GET", "/indexes") == 1


def test_inject_reset_drops_the_connection_without_an_answer(api):
    api.inject("GET", "/indexes", action="reset")
    with pytest.raises(requests.ConnectionError):
        get(api, "/indexes/idx_test")
    assert get(api, "/indexes/idx_test").status_code == 200
    api.inject("POST", "/tasks", action="reset")
    with pytest.raises(requests.ConnectionError):
        post_task(api, os.urandom(500_000))
    assert api.tasks == {}
    assert [r.status for r in api.requests] == [0, 200, 0]


def test_inject_reset_midbody_stops_reading_half_way(api):
    api.inject("POST", "/tasks", action="reset_midbody")
    with pytest.raises(requests.ConnectionError):
        post_task(api, os.urandom(8 << 20))
    assert api.tasks == {} and api.requests[0].status == 0
    assert post_task(api).status_code == 200


def test_create_then_reset_creates_exactly_one_task_the_client_never_hears_of(api):
    api.inject("POST", "/tasks", action="create_then_reset")
    content = os.urandom(300_000)
    with pytest.raises(requests.ConnectionError):
        post_task(api, content, filename="lost.mp4")
    (task,) = api.tasks.values()
    assert task["filename"] == "lost.mp4" and task["sha256"] == hashlib.sha256(content).hexdigest()
    assert api.uploads() == []  # no answer went out
    (record,) = api.requests
    assert record.status == 0 and record.task_id == task["_id"]
    listed = get(api, "/tasks", filename="lost.mp4", index_id="idx_test").json()["data"]
    assert [t["_id"] for t in listed] == [task["_id"]]  # how a client adopts it


def test_inject_delay_makes_a_client_read_timeout(api):
    api.inject("GET", "/indexes", status=200, body={"late": True}, delay=1.0)
    with pytest.raises(requests.ReadTimeout):
        requests.get(api.base_url + "/indexes/idx_test", timeout=(2, 0.2),
                     headers={"x-api-key": api.api_key})
    assert get(api, "/indexes/idx_test").json()["_id"] == "idx_test"


def test_v12_shape_has_metadata_process_and_late_video_id():
    with FakeTwelveLabs(api_version="v1.2", progression=SLOW) as api:
        assert api.base_url.endswith("/v1.2")
        created = post_task(api).json()
        early = get(api, f"/tasks/{created['_id']}").json()
        api.set_progression(NOW_READY)
        late = get(api, f"/tasks/{created['_id']}").json()
    assert "system_metadata" not in early and early["metadata"]["filename"] == "clip.mp4"
    assert "video_id" not in early and 0 <= early["process"]["percentage"] < 100
    assert early["process"]["remain_seconds"] > 0
    assert late["status"] == "ready" and late["video_id"] == created["video_id"]
    assert late["process"] == {"percentage": 100, "remain_seconds": 0}


def test_a_64_mib_sparse_file_streams_through(api, tmp_path):
    path = tmp_path / "sparse.mp4"
    with open(path, "wb") as fh:
        fh.truncate(64 << 20)
        fh.seek(40 << 20)
        fh.write(b"a little data in the middle")
    with open(path, "rb") as fh:
        body = MultipartBody({"index_id": "idx_test"}, "video_file", path.name,
                             RangedFileReader(fh), content_type="video/mp4")
        assert requests.post(api.base_url + "/tasks", data=body, timeout=20, headers={
            "Content-Type": body.content_type, "x-api-key": api.api_key}).status_code == 200
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    (upload,) = api.uploads()
    assert upload.file.size == 64 << 20 and upload.file.sha256 == digest.hexdigest()


def test_stop_ends_idle_keep_alive_connections(session):
    api = FakeTwelveLabs().start()
    assert get(api, "/indexes/idx_test", session).status_code == 200  # connection stays open
    started = time.monotonic()
    api.stop()
    assert time.monotonic() - started < 2
    with pytest.raises(RuntimeError):
        _ = api.base_url


def test_standalone_mode_prints_base_url_and_serves_until_sigterm(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "watcherd", "simulator", "--api-key", "k1",
                             "--index", "idx_a"], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parent.parent)
    try:
        base_url = proc.stdout.readline().strip()
        assert re.match(r"^http://127\.0\.0\.1:\d+/v1\.3$", base_url)
        response = requests.get(base_url + "/indexes/idx_a", headers={"x-api-key": "k1"},
                                timeout=5)
        assert response.status_code == 200 and response.json()["_id"] == "idx_a"
        proc.terminate()
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
