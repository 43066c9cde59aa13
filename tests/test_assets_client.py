"""The assets-flow client calls (twelvelabs/assets.py) against the simulator: a whole
file uploaded chunk by chunk and indexed, the key kept off the storage host, and the
error types the new routes give."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

import pytest

from watcherd.errors import ApiRejected, AuthError, TransientError
from watcherd.simulator import FakeTwelveLabs
from watcherd.twelvelabs.assets import (
    AssetsApi,
    ChunkUrlRefused,
    CompletedChunk,
    MultipartNotEnabled,
    UploadSession,
)
from watcherd.twelvelabs.client import TwelveLabsClient

pytestmark = pytest.mark.timeout(60)

CHUNK = 64 << 10


@pytest.fixture
def api(tmp_path) -> Iterator[FakeTwelveLabs]:
    with FakeTwelveLabs(indexes=("idx_test", "idx_other"), store_dir=tmp_path / "store") as fake:
        fake.multipart_chunk_size = CHUNK
        fake.asset_ready_after = 0.1
        fake.indexed_progression = (("pending", 0.0), ("indexing", 0.05), ("ready", 0.15))
        yield fake
    assert fake.errors == [], "the fake itself crashed:\n" + "\n".join(fake.errors)


class CountingKey:
    """The key provider; counts how often a request asked for the key."""

    def __init__(self, key: str) -> None:
        self.key, self.calls = key, 0

    def __call__(self) -> str:
        self.calls += 1
        return self.key


@pytest.fixture
def key(api) -> CountingKey:
    return CountingKey(api.api_key)


@pytest.fixture
def assets(api, key) -> Iterator[AssetsApi]:
    client = TwelveLabsClient(api.base_url, key, io_timeout=5.0)
    calls = AssetsApi(client)
    yield calls
    calls.close()
    client.close()


def source(tmp_path, size: int) -> str:
    path = tmp_path / "clip.mp4"
    path.write_bytes(os.urandom(size))
    return str(path)


def put_all(assets: AssetsApi, session: UploadSession, path: str,
            size: int) -> list[CompletedChunk]:
    """Every chunk, with URLs from the create answer and then fresh windows."""
    urls = {u.chunk_index: u.url for u in session.upload_urls}
    done = []
    for index in range(1, session.total_chunks + 1):
        if index not in urls:
            window = assets.request_urls(session.upload_id, index,
                                         min(50, session.total_chunks - index + 1))
            urls.update({u.chunk_index: u.url for u in window})
        offset, length = session.chunk_range(index, size)
        etag = assets.put_chunk(urls[index], path, offset, length, session.upload_headers)
        done.append(CompletedChunk(index, etag, length))
    return done


def test_a_file_goes_up_chunk_by_chunk_and_is_indexed_end_to_end(api, assets, key,
                                                                 tmp_path):
    size = 7 * CHUNK + 12_345
    path = source(tmp_path, size)
    api.initial_url_count = 3  # the rest come in fresh windows
    api.upload_headers = {"x-amz-server-side-encryption": "AES256"}
    session = assets.create_upload("clip.mp4", size, user_metadata={"sha256": "abc"})
    assert (session.chunk_size, session.total_chunks) == (CHUNK, 8)
    assert len(session.upload_urls) == 3
    keys_before = key.calls
    chunks = put_all(assets, session, path, size)
    assert key.calls == keys_before + 1  # the one window request; never a chunk PUT
    first = assets.report_chunks(session.upload_id, chunks[:5])
    assert first["processed_chunks"] == 5 and "url" not in first
    last = assets.report_chunks(session.upload_id, chunks[4:])  # chunk 5 again: harmless
    assert (last["processed_chunks"], last["duplicate_chunks"]) == (3, 1) and last["url"]
    status = assets.upload_status(session.upload_id)
    assert status["status"] == "completed" and len(status["uploaded_chunks"]) == 8
    assert assets.list_incomplete_uploads() == []
    assert api.wait_for(lambda: assets.get_asset(session.asset_id)["status"] == "ready")
    made = assets.create_indexed_asset("idx_test", session.asset_id,
                                       user_metadata={"sha256": "abc"})
    assert made["asset_id"] == session.asset_id
    assert api.wait_for(lambda: assets.get_indexed_asset(
        "idx_test", made["_id"])["status"] == "ready")
    assert assets.list_indexed_assets_by_asset(session.asset_id) == [
        {"_id": made["_id"], "index_id": "idx_test"}]
    with open(path, "rb") as fh:
        assert api.assets[session.asset_id].sha256 == hashlib.sha256(fh.read()).hexdigest()
    assert api.key_leaks == []


def test_chunk_puts_carry_content_length_the_upload_headers_and_never_the_key(
        api, assets, tmp_path):
    size = 2 * CHUNK + 1
    path = source(tmp_path, size)
    api.upload_headers = {"x-amz-meta-test": "1"}
    session = assets.create_upload("clip.mp4", size)
    progress: list[int] = []
    offset, length = session.chunk_range(3, size)
    assets.put_chunk(session.upload_urls[2].url, path, offset, length,
                     session.upload_headers, on_progress=progress.append)
    (put,) = [r for r in api.requests if r.method == "PUT"]
    assert put.status == 200 and put.headers["content-length"] == "1"
    assert "transfer-encoding" not in put.headers
    assert put.headers["x-amz-meta-test"] == "1"
    assert "x-api-key" not in put.headers and api.key_leaks == []
    assert progress == [1]


def test_a_chunk_is_read_from_its_offset_in_the_file(api, assets, tmp_path):
    size = 3 * CHUNK
    path = source(tmp_path, size)
    session = assets.create_upload("clip.mp4", size)
    offset, length = session.chunk_range(2, size)
    etag = assets.put_chunk(session.upload_urls[1].url, path, offset, length, {})
    with open(path, "rb") as fh:
        fh.seek(CHUNK)
        assert etag.strip('"') == hashlib.md5(fh.read(CHUNK)).hexdigest()


def test_a_used_or_expired_url_asks_for_a_fresh_one_not_a_paused_account(api, assets,
                                                                         tmp_path):
    size = 2 * CHUNK
    path = source(tmp_path, size)
    session = assets.create_upload("clip.mp4", size)
    url = session.upload_urls[0].url
    assets.put_chunk(url, path, 0, CHUNK, {})
    with pytest.raises(ChunkUrlRefused) as used:
        assets.put_chunk(url, path, 0, CHUNK, {})
    assert used.value.status == 403 and not isinstance(used.value, AuthError)
    api.url_ttl_seconds = -1.0
    (stale,) = assets.request_urls(session.upload_id, 2, 1)
    with pytest.raises(ChunkUrlRefused):
        assets.put_chunk(stale.url, path, CHUNK, CHUNK, {})
    api.url_ttl_seconds = 3600.0
    (fresh,) = assets.request_urls(session.upload_id, 2, 1)
    assert assets.put_chunk(fresh.url, path, CHUNK, CHUNK, {})


def test_storage_failures_are_transient_and_do_not_spend_the_url(api, assets, tmp_path):
    path = source(tmp_path, CHUNK)
    session = assets.create_upload("clip.mp4", CHUNK)
    url = session.upload_urls[0].url
    api.inject("PUT", "/_storage", status=503, times=1)
    with pytest.raises(TransientError) as unavailable:
        assets.put_chunk(url, path, 0, CHUNK, {})
    assert unavailable.value.status == 503
    assert not isinstance(unavailable.value, ChunkUrlRefused)
    api.inject("PUT", "/_storage", action="reset_midbody", times=1)
    with pytest.raises(TransientError) as reset:
        assets.put_chunk(url, path, 0, CHUNK, {})
    assert reset.value.status is None
    assert assets.put_chunk(url, path, 0, CHUNK, {})


def test_a_file_that_shrank_under_a_chunk_is_not_sent_short(api, assets, tmp_path):
    path = source(tmp_path, 2 * CHUNK)
    session = assets.create_upload("clip.mp4", 2 * CHUNK)
    os.truncate(path, CHUNK + 10)
    with pytest.raises(TransientError):
        assets.put_chunk(session.upload_urls[1].url, path, CHUNK, CHUNK, {})
    assert all(r.status != 200 for r in api.requests if r.method == "PUT")


def test_403_on_session_create_means_multipart_is_not_enabled(api, assets):
    api.multipart_forbidden = True
    with pytest.raises(MultipartNotEnabled) as refused:
        assets.create_upload("clip.mp4", CHUNK)
    assert refused.value.status == 403
    with pytest.raises(AuthError):  # elsewhere a 403 keeps its usual meaning
        assets.list_incomplete_uploads()


def test_a_bad_key_on_the_new_routes_is_an_auth_error(api, tmp_path):
    client = TwelveLabsClient(api.base_url, lambda: "wrong", io_timeout=5.0)
    calls = AssetsApi(client)
    try:
        with pytest.raises(AuthError) as refused:
            calls.create_upload("clip.mp4", CHUNK)
        assert not isinstance(refused.value, MultipartNotEnabled)
        with pytest.raises(AuthError):
            calls.get_asset("x")
    finally:
        calls.close()
        client.close()


def test_a_lost_create_answer_may_have_created_the_session(api, assets):
    api.inject("POST", "/assets/multipart-uploads", action="create_then_reset", times=1)
    with pytest.raises(TransientError) as lost:
        assets.create_upload("clip.mp4", 3 * CHUNK)
    assert lost.value.maybe_created
    (found,) = assets.list_incomplete_uploads()
    assert (found["total_size"], found["total_chunks"]) == (3 * CHUNK, 3)
    api.inject("POST", "/assets/multipart-uploads", status=429, times=1)
    with pytest.raises(TransientError) as refused:
        assets.create_upload("clip.mp4", CHUNK)
    assert not refused.value.maybe_created


def test_a_lost_indexing_answer_is_found_by_listing_the_asset(api, assets, tmp_path):
    path = source(tmp_path, CHUNK)
    session = assets.create_upload("clip.mp4", CHUNK)
    assets.report_chunks(session.upload_id, put_all(assets, session, path, CHUNK))
    assert api.wait_for(lambda: assets.get_asset(session.asset_id)["status"] == "ready")
    api.inject("POST", "/indexes/idx_test/indexed-assets", action="create_then_reset")
    with pytest.raises(TransientError) as lost:
        assets.create_indexed_asset("idx_test", session.asset_id)
    assert lost.value.maybe_created
    (adopted,) = assets.list_indexed_assets_by_asset(session.asset_id)
    assert adopted["index_id"] == "idx_test"
    api.index_shape_in_list = "object"
    assert assets.list_indexed_assets_by_asset(session.asset_id) == [adopted]


def test_refusals_on_the_new_routes_are_permanent_rejections(api, assets, tmp_path):
    path = source(tmp_path, 2 * CHUNK)
    session = assets.create_upload("clip.mp4", 2 * CHUNK)
    with pytest.raises(ApiRejected) as bad_proof:
        assets.report_chunks(session.upload_id, [CompletedChunk(1, '"' + "0" * 32 + '"',
                                                                CHUNK)])
    assert bad_proof.value.code == "invalid_proof"
    with pytest.raises(ApiRejected) as unready:
        assets.create_indexed_asset("idx_test", session.asset_id)
    assert unready.value.code == "asset_not_ready"
    with pytest.raises(ApiRejected) as unknown:
        assets.upload_status("nope")
    assert unknown.value.status == 404
    api.expire_upload(session.upload_id)
    assert assets.upload_status(session.upload_id)["status"] == "expired"
    with pytest.raises(ApiRejected) as expired:
        assets.request_urls(session.upload_id, 1, 1)
    assert expired.value.code == "upload_expired"
    with pytest.raises(ValueError):
        assets.request_urls(session.upload_id, 1, 51)
    assert path


def test_a_server_error_on_a_new_route_is_transient(api, assets):
    api.inject("GET", "/assets/", status=500, body="<html>oops</html>", times=1)
    with pytest.raises(TransientError) as failed:
        assets.get_asset("whatever")
    assert failed.value.status == 500


def test_status_walks_every_page(api, assets):
    api.initial_url_count = 0
    session = assets.create_upload("clip.mp4", 120 * CHUNK)
    status = assets.upload_status(session.upload_id)
    assert [c["index"] for c in status["uploaded_chunks"]] == list(range(1, 121))
    assert api.count("GET", "/assets/multipart-uploads/") == 3


def test_a_transport_error_does_not_quote_the_presigned_url(api, assets, tmp_path):
    path = source(tmp_path, CHUNK)
    session = assets.create_upload("clip.mp4", CHUNK)
    url = session.upload_urls[0].url
    token = url.rsplit("/", 1)[1]
    api.stop()  # nothing listens any more: the connect error names the URL's path
    with pytest.raises(TransientError) as failed:
        assets.put_chunk(url + "?X-Amz-Signature=secret", path, 0, CHUNK, {})
    assert failed.value.status is None
    assert token not in str(failed.value) and "secret" not in str(failed.value)
    assert "<chunk url>" in str(failed.value)


@pytest.mark.parametrize("connections, discarded", [(10, True), (14, False)])
def test_the_storage_pool_keeps_as_many_connections_as_puts_in_flight(
        api, key, tmp_path, caplog, connections, discarded):
    import logging
    import threading

    puts = 14
    size = puts * CHUNK
    path = source(tmp_path, size)
    api.initial_url_count = puts
    api.throttle_bytes_per_second = CHUNK * 4  # each PUT takes about 0.25 s: all overlap
    client = TwelveLabsClient(api.base_url, key, io_timeout=5.0)
    calls = AssetsApi(client, connections=connections)
    try:
        session = calls.create_upload("clip.mp4", size)
        start = threading.Barrier(puts)

        def put(index: int) -> None:
            start.wait()
            offset, length = session.chunk_range(index, size)
            calls.put_chunk(session.upload_urls[index - 1].url, path, offset, length,
                            session.upload_headers)

        caplog.set_level(logging.WARNING, logger="urllib3.connectionpool")
        threads = [threading.Thread(target=put, args=(i,)) for i in range(1, puts + 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        calls.close()
        client.close()
    full = [r for r in caplog.records if "pool is full" in r.getMessage()]
    assert bool(full) is discarded
