"""The simulator's assets flow, driven with raw requests: it must be as strict as the
research note (round2-assets-models-multihost.md sections 0 and 1) says the API is."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from watcherd.simulator import FakeTwelveLabs

pytestmark = pytest.mark.timeout(30)

CHUNK = 64 << 10
NOW_READY = (("pending", 0.0), ("ready", 0.0))


@pytest.fixture
def api(tmp_path) -> Iterator[FakeTwelveLabs]:
    with FakeTwelveLabs(indexes=("idx_test", "idx_other"), store_dir=tmp_path / "store") as fake:
        fake.multipart_chunk_size = CHUNK
        fake.asset_ready_after = 0.0
        yield fake
    assert fake.errors == [], "the fake itself crashed:\n" + "\n".join(fake.errors)


def call(api: FakeTwelveLabs, method: str, path: str, *, key: str | None = None,
         **kwargs: Any) -> requests.Response:
    headers = {"x-api-key": key or api.api_key, **kwargs.pop("headers", {})}
    return requests.request(method, api.base_url + path, headers=headers, timeout=10,
                            **kwargs)


def create(api: FakeTwelveLabs, size: int, **extra: Any) -> dict[str, Any]:
    answer = call(api, "POST", "/assets/multipart-uploads",
                  json={"filename": "clip.mp4", "type": "video", "total_size": size, **extra})
    assert answer.status_code == 201, answer.text
    return answer.json()


def put(url: str, data: bytes, **headers: str) -> requests.Response:
    return requests.put(url, data=data, headers=headers, timeout=10)


def report(api: FakeTwelveLabs, upload_id: str, *chunks: tuple[int, str, int]
           ) -> requests.Response:
    return call(api, "POST", f"/assets/multipart-uploads/{upload_id}", json={
        "completed_chunks": [{"chunk_index": i, "proof": p, "proof_type": "etag",
                              "chunk_size": n} for i, p, n in chunks]})


def upload_all(api: FakeTwelveLabs, content: bytes) -> dict[str, Any]:
    session = create(api, len(content))
    for url in session["upload_urls"]:
        i = url["chunk_index"]
        part = content[(i - 1) * CHUNK: i * CHUNK]
        etag = put(url["url"], part).headers["ETag"]
        assert report(api, session["upload_id"], (i, etag, len(part))).status_code == 200
    return session


def test_create_answers_the_documented_session_with_the_servers_chunk_size(api):
    size = 5 * CHUNK + 7
    api.initial_url_count = 4
    session = create(api, size, user_metadata={"sha256": "abc"})
    assert session["chunk_size"] == CHUNK
    assert session["total_chunks"] == math.ceil(size / CHUNK) == 6
    assert [u["chunk_index"] for u in session["upload_urls"]] == [1, 2, 3, 4]
    assert all(u["url"].startswith(api.base_url.rsplit("/", 1)[0] + "/_storage/")
               for u in session["upload_urls"])
    assert session["upload_headers"] == {} and session["expires_at"].endswith("Z")
    asset = call(api, "GET", f"/assets/{session['asset_id']}").json()
    assert asset["status"] == "processing" and asset["method"] == "multipart"
    assert asset["user_metadata"] == {"sha256": "abc"}


@pytest.mark.parametrize("body", [
    {"type": "video", "total_size": 10},                                  # no filename
    {"filename": "a.mp4", "type": "document", "total_size": 10},
    {"filename": "a.mp4", "type": "video", "total_size": 0},
    {"filename": "a.mp4", "type": "video", "total_size": (10 << 30) + 1},  # > 10 GB
    {"filename": "a.mp4", "type": "video", "total_size": "10"},
    {"filename": "a.mp4", "type": "video", "total_size": 10, "user_metadata": '{"a": 1}'},
    {"filename": "a.mp4", "type": "video", "total_size": 10, "enable_hls": "yes"},
])
def test_create_refuses_what_the_api_refuses(api, body):
    answer = call(api, "POST", "/assets/multipart-uploads", json=body)
    assert answer.status_code == 400 and answer.json()["code"] == "parameter_invalid"
    assert api.uploads_by_id == {}


def test_create_wants_json_and_the_key(api):
    assert call(api, "POST", "/assets/multipart-uploads", data="filename=a").status_code == 400
    assert call(api, "POST", "/assets/multipart-uploads", key="wrong",
                json={"filename": "a", "type": "video", "total_size": 1}).status_code == 401


def test_a_large_file_gets_larger_chunks_than_ten_thousand_parts_allow(api):
    session = create(api, 10_000 * CHUNK + 1)
    assert session["total_chunks"] <= 10_000 and session["chunk_size"] > CHUNK


def test_chunk_put_answers_the_quoted_md5_and_each_url_takes_one_put(api):
    session = create(api, CHUNK + 10)
    data = b"x" * CHUNK
    first = put(session["upload_urls"][0]["url"], data)
    assert first.status_code == 200
    assert first.headers["ETag"] == '"' + hashlib.md5(data).hexdigest() + '"'
    again = put(session["upload_urls"][0]["url"], data)
    assert again.status_code == 403 and b"AccessDenied" in again.content


@pytest.mark.parametrize("size", [CHUNK - 1, CHUNK + 1])
def test_a_chunk_of_the_wrong_size_is_refused(api, size):
    session = create(api, 2 * CHUNK)
    answer = put(session["upload_urls"][0]["url"], b"y" * size)
    assert answer.status_code == 400 and b"InvalidPartSize" in answer.content
    assert report(api, session["upload_id"],
                  (1, hashlib.md5(b"y" * size).hexdigest(), CHUNK)).status_code == 400


def test_the_last_chunk_is_the_remainder(api):
    session = create(api, CHUNK + 10)
    assert put(session["upload_urls"][1]["url"], b"z" * 10).status_code == 200


def test_a_chunked_transfer_without_content_length_is_refused(api):
    session = create(api, CHUNK)
    answer = requests.put(session["upload_urls"][0]["url"], data=iter([b"a" * CHUNK]),
                          timeout=10)
    assert answer.status_code == 411


def test_an_expired_url_is_refused(api):
    api.url_ttl_seconds = -1.0
    session = create(api, CHUNK)
    answer = put(session["upload_urls"][0]["url"], b"a" * CHUNK)
    assert answer.status_code == 403 and b"expired" in answer.content


def test_upload_headers_are_required_on_every_chunk_put(api):
    api.upload_headers = {"x-amz-server-side-encryption": "AES256"}
    session = create(api, 2 * CHUNK)
    assert session["upload_headers"] == api.upload_headers
    urls = session["upload_urls"]
    assert put(urls[0]["url"], b"a" * CHUNK).status_code == 403
    assert put(urls[1]["url"], b"a" * CHUNK, **api.upload_headers).status_code == 200


def test_a_storage_request_carrying_the_key_is_recorded(api):
    session = create(api, 2 * CHUNK)
    urls = session["upload_urls"]
    put(urls[0]["url"], b"a" * CHUNK)
    assert api.key_leaks == []
    put(urls[1]["url"], b"a" * CHUNK, **{"x-api-key": api.api_key})
    (leak,) = api.key_leaks
    assert urls[1]["url"].endswith(leak.path) and leak.path.startswith("/_storage/")


def test_fresh_url_windows_are_at_most_fifty_and_end_at_the_last_chunk(api):
    api.initial_url_count = 0
    session = create(api, 60 * CHUNK)
    assert session["upload_urls"] == []
    path = f"/assets/multipart-uploads/{session['upload_id']}/presigned-urls"
    for start, count in ((0, 1), (61, 1), (1, 0), (1, 51), ("1", 2)):
        assert call(api, "POST", path, json={"start": start, "count": count}).status_code == 400
    window = call(api, "POST", path, json={"start": 41, "count": 50}).json()
    assert [u["chunk_index"] for u in window["upload_urls"]] == list(range(41, 61))
    assert window["start_index"] == 41 and window["count"] == 20
    again = call(api, "POST", path, json={"start": 41, "count": 1}).json()
    assert again["upload_urls"][0]["url"] != window["upload_urls"][0]["url"]
    unknown = call(api, "POST", "/assets/multipart-uploads/nope/presigned-urls",
                   json={"start": 1, "count": 1})
    assert unknown.status_code == 404


def test_reports_need_a_valid_proof_and_duplicates_are_counted_and_ignored(api):
    session = create(api, 2 * CHUNK)
    uid, urls = session["upload_id"], session["upload_urls"]
    etag = put(urls[0]["url"], b"a" * CHUNK).headers["ETag"]
    bad = report(api, uid, (1, etag, CHUNK), (2, etag, CHUNK))  # chunk 2 was never PUT
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_proof"
    assert api.uploads_by_id[uid].reported == {}  # nothing of a refused batch applies
    assert report(api, uid, (1, '"' + "0" * 32 + '"', CHUNK)).status_code == 400
    assert report(api, uid, (1, etag, CHUNK - 1)).status_code == 400
    ok = report(api, uid, (1, etag.strip('"'), CHUNK)).json()
    assert ok == {"asset_id": session["asset_id"], "processed_chunks": 1,
                  "duplicate_chunks": 0, "total_completed": 1}
    twice = report(api, uid, (1, etag, CHUNK), (1, etag, CHUNK)).json()
    assert twice["processed_chunks"] == 0 and twice["duplicate_chunks"] == 2
    assert "url" not in twice


def test_status_pages_and_the_incomplete_list(api):
    session = create(api, 3 * CHUNK)
    uid = session["upload_id"]
    etag = put(session["upload_urls"][1]["url"], b"b" * CHUNK).headers["ETag"]
    report(api, uid, (2, etag, CHUNK))
    page1 = call(api, "GET", f"/assets/multipart-uploads/{uid}",
                 params={"page_limit": 2}).json()
    page2 = call(api, "GET", f"/assets/multipart-uploads/{uid}",
                 params={"page_limit": 2, "page": 2}).json()
    assert page1["status"] == "active" and page1["page_info"]["total_page"] == 2
    chunks = page1["uploaded_chunks"] + page2["uploaded_chunks"]
    assert [(c["index"], c["status"]) for c in chunks] == [
        (1, "pending"), (2, "completed"), (3, "pending")]
    assert (page1["chunks_completed"], page1["chunks_pending"]) == (1, 2)
    assert page1["uploaded_size"] == CHUNK and page1["total_size"] == 3 * CHUNK
    missing = call(api, "GET", "/assets/multipart-uploads/nope")
    assert missing.status_code == 404 and missing.json()["message"] == "Upload not found."
    listed = call(api, "GET", "/assets/multipart-uploads").json()["data"]
    assert [(s["upload_id"], s["total_size"], s["total_chunks"]) for s in listed] == [
        (uid, 3 * CHUNK, 3)]


def test_an_expired_session_can_no_longer_be_resumed(api):
    session = create(api, 2 * CHUNK)
    uid = session["upload_id"]
    api.expire_upload(uid)
    assert call(api, "GET", f"/assets/multipart-uploads/{uid}").json()["status"] == "expired"
    assert call(api, "GET", "/assets/multipart-uploads").json()["data"] == []
    assert put(session["upload_urls"][0]["url"], b"a" * CHUNK).status_code == 404
    urls = call(api, "POST", f"/assets/multipart-uploads/{uid}/presigned-urls",
                json={"start": 1, "count": 1})
    assert urls.status_code == 400 and urls.json()["code"] == "upload_expired"


def test_the_session_ttl_is_honoured(api):
    api.session_ttl_seconds = -1.0
    session = create(api, CHUNK)
    status = call(api, "GET", f"/assets/multipart-uploads/{session['upload_id']}").json()
    assert status["status"] == "expired"


def test_a_completed_upload_becomes_a_ready_asset_with_the_bytes_sent(api, tmp_path):
    content = bytes(range(256)) * (3 * CHUNK // 256) + b"tail"
    api.asset_ready_after = 0.2
    session = upload_all(api, content)
    status = call(api, "GET", f"/assets/multipart-uploads/{session['upload_id']}").json()
    assert status["status"] == "completed"
    assert call(api, "GET", "/assets/multipart-uploads").json()["data"] == []
    asset_path = f"/assets/{session['asset_id']}"
    assert call(api, "GET", asset_path).json()["status"] == "processing"
    assert api.wait_for(lambda: call(api, "GET", asset_path).json()["status"] == "ready")
    assert call(api, "GET", asset_path).json()["size"] == len(content)
    assert api.assets[session["asset_id"]].sha256 == hashlib.sha256(content).hexdigest()


def test_a_failing_asset_says_so(api):
    api.fail_assets(["clip.mp4"], "unsupported codec")
    session = upload_all(api, b"v" * CHUNK)
    asset = call(api, "GET", f"/assets/{session['asset_id']}").json()
    assert asset["status"] == "failed" and asset["error"] == {"message": "unsupported codec"}
    assert call(api, "GET", "/assets/nope").status_code == 404


def test_indexing_wants_a_ready_asset_and_answers_202(api):
    api.asset_ready_after = 60.0
    session = upload_all(api, b"v" * CHUNK)
    path = "/indexes/idx_test/indexed-assets"
    early = call(api, "POST", path, json={"asset_id": session["asset_id"]})
    assert early.status_code == 400 and early.json()["code"] == "asset_not_ready"
    api.asset_ready_after = 0.0
    assert call(api, "POST", path, json={}).status_code == 400
    assert call(api, "POST", path, json={"asset_id": "nope"}).status_code == 404
    assert call(api, "POST", "/indexes/idx_gone/indexed-assets",
                json={"asset_id": session["asset_id"]}).status_code == 404
    assert call(api, "POST", path, json={"asset_id": session["asset_id"],
                                         "user_metadata": "{}"}).status_code == 400
    created = call(api, "POST", path, json={"asset_id": session["asset_id"],
                                            "user_metadata": {"sha256": "abc"}})
    assert created.status_code == 202
    assert created.json() == {"_id": created.json()["_id"], "asset_id": session["asset_id"]}


def test_an_indexed_asset_goes_through_its_statuses(api):
    api.indexed_progression = (("pending", 0.0), ("indexing", 0.1), ("ready", 0.3))
    session = upload_all(api, b"v" * CHUNK)
    made = call(api, "POST", "/indexes/idx_test/indexed-assets",
                json={"asset_id": session["asset_id"], "user_metadata": {"k": "v"}}).json()
    path = f"/indexes/idx_test/indexed-assets/{made['_id']}"
    seen = [call(api, "GET", path).json()["status"]]
    assert api.wait_for(lambda: seen.append(call(api, "GET", path).json()["status"])
                        or seen[-1] == "ready")
    assert seen[0] == "pending" and seen[-1] == "ready"
    assert [s for i, s in enumerate(seen) if i == 0 or seen[i - 1] != s] == [
        "pending", "indexing", "ready"]
    item = call(api, "GET", path).json()
    assert item["asset_id"] == session["asset_id"] and item["user_metadata"] == {"k": "v"}
    assert item["system_metadata"]["size"] == CHUNK
    assert call(api, "GET", f"/indexes/idx_other/indexed-assets/{made['_id']}"
                ).status_code == 404


def test_indexing_failure_reuses_the_fail_filenames_switch(api):
    api.indexed_progression = NOW_READY
    api.fail_filenames(["clip.mp4"])
    session = upload_all(api, b"v" * CHUNK)
    made = call(api, "POST", "/indexes/idx_test/indexed-assets",
                json={"asset_id": session["asset_id"]}).json()
    assert call(api, "GET", f"/indexes/idx_test/indexed-assets/{made['_id']}"
                ).json()["status"] == "failed"


@pytest.mark.parametrize("shape", ["id", "object"])
def test_indexed_assets_are_listed_by_asset(api, shape):
    api.index_shape_in_list = shape
    session = upload_all(api, b"v" * CHUNK)
    made = [call(api, "POST", f"/indexes/{idx}/indexed-assets",
                 json={"asset_id": session["asset_id"]}).json()["_id"]
            for idx in ("idx_test", "idx_other")]
    listed = call(api, "GET", f"/assets/{session['asset_id']}/indexed-assets").json()
    expected = [(made[1], "idx_other"), (made[0], "idx_test")]  # newest first
    assert [(i["_id"], i["index"] if shape == "id" else i["index"]["_id"])
            for i in listed["data"]] == expected
    assert listed["page_info"]["total_results"] == 2


def test_the_403_mode_refuses_every_multipart_route(api):
    session = create(api, CHUNK)
    api.multipart_forbidden = True
    for method, path in (("POST", "/assets/multipart-uploads"),
                         ("GET", "/assets/multipart-uploads"),
                         ("GET", f"/assets/multipart-uploads/{session['upload_id']}")):
        answer = call(api, method, path, json={"filename": "a", "type": "video",
                                               "total_size": 1})
        assert answer.status_code == 403, (method, path)


def test_faults_reach_every_new_route(api):
    api.inject("POST", "/assets/multipart-uploads", status=503, times=1)
    assert call(api, "POST", "/assets/multipart-uploads",
                json={"filename": "a", "type": "video", "total_size": 1}).status_code == 503
    assert api.uploads_by_id == {}
    api.inject("POST", "/assets/multipart-uploads", action="create_then_reset", times=1)
    with pytest.raises(requests.ConnectionError):
        call(api, "POST", "/assets/multipart-uploads",
             json={"filename": "a", "type": "video", "total_size": CHUNK})
    (lost,) = api.uploads_by_id.values()  # the answer was lost, the session exists
    session = create(api, CHUNK)
    api.inject("PUT", "/_storage", status=500, times=1)
    assert put(session["upload_urls"][0]["url"], b"a" * CHUNK).status_code == 500
    api.inject("PUT", "/_storage", action="reset", times=1)
    with pytest.raises(requests.ConnectionError):
        put(session["upload_urls"][0]["url"], b"a" * CHUNK)
    # neither fault spent the one-time URL
    assert put(session["upload_urls"][0]["url"], b"a" * CHUNK).status_code == 200
    for method, prefix in (("GET", "/assets/"), ("POST", "/indexes/idx_test/indexed-assets"),
                           ("GET", "/indexes/idx_test/indexed-assets/")):
        api.inject(method, prefix, status=429, times=1)
    assert call(api, "GET", f"/assets/{lost.asset_id}").status_code == 429
    assert call(api, "POST", "/indexes/idx_test/indexed-assets",
                json={"asset_id": lost.asset_id}).status_code == 429
    assert call(api, "GET", "/indexes/idx_test/indexed-assets/x").status_code == 429
