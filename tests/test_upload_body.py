"""The upload body: exact framing, the file's own reads, no copy per block, ranged reads."""

from __future__ import annotations

import hashlib
import os
import tracemalloc

import pytest
import requests
from urllib3.filepost import encode_multipart_formdata

from watcherd.errors import TransientError
from watcherd.simulator.sink import FastSink
from watcherd.twelvelabs.body import MultipartBody, RangedFileReader
from watcherd.twelvelabs.client import TwelveLabsClient, UploadAborted

pytestmark = pytest.mark.timeout(60)


def drain(body: MultipartBody, size: int = 1 << 20) -> bytes:
    out = bytearray()
    while chunk := body.read(size):
        out += chunk
    return bytes(out)


def test_the_body_is_exactly_urllib3s_multipart_encoding(tmp_path):
    content = os.urandom((3 << 20) + 17)
    path = tmp_path / 'odd "name" é.mp4'
    path.write_bytes(content)
    fields = {"index_id": "idx_test", "user_metadata": '{"a": "b"}'}
    with open(path, "rb") as fh:
        body = MultipartBody(fields, "video_file", path.name, RangedFileReader(fh))
        raw = drain(body, 300_000)
    expected, content_type = encode_multipart_formdata(
        {**fields, "video_file": (path.name, content, "application/octet-stream")},
        boundary=body.boundary)
    assert raw == expected
    assert len(body) == len(expected) == body.bytes_read
    assert body.content_type == content_type


def test_the_reader_reuses_one_buffer_and_reads_only_its_range(tmp_path):
    content = os.urandom(5 << 20)
    path = tmp_path / "f.bin"
    path.write_bytes(content)
    with open(path, "rb") as fh:
        fh.seek(123)  # the shared position must not matter
        reader = RangedFileReader(fh, offset=(1 << 20) + 5, length=(2 << 20) + 7, block=1 << 20)
        assert len(reader) == (2 << 20) + 7
        got, buffers = bytearray(), set()
        while block := reader.read(1 << 20):
            buffers.add(id(block.obj))
            got += block
    assert bytes(got) == content[(1 << 20) + 5:(3 << 20) + 12]
    assert len(buffers) == 1


def test_an_upload_allocates_no_buffer_per_block(tmp_path):
    """toolbelt's encoder copied each 1 MiB block into a BytesIO: ~3 MiB at its peak."""
    path = tmp_path / "big.mp4"
    path.write_bytes(os.urandom(24 << 20))
    with FastSink() as sink:
        client = TwelveLabsClient(sink.base_url, lambda: "k")
        client.create_task(path, index_id="idx")  # warm-up: imports, the connection pool
        tracemalloc.start()
        try:
            client.create_task(path, index_id="idx")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        client.close()
    (_, request) = sink.requests
    assert int(request.headers["content-length"]) == request.body_bytes > 24 << 20
    assert peak < (1 << 20) + (512 << 10), f"{peak} bytes traced at the peak"


def test_progress_counts_every_byte_of_the_body(tmp_path):
    path = tmp_path / "p.mp4"
    path.write_bytes(os.urandom((2 << 20) + 99))
    seen: list[tuple[int, int]] = []
    with FastSink() as sink:
        client = TwelveLabsClient(sink.base_url, lambda: "k")
        client.create_task(path, index_id="idx", on_progress=lambda d, t: seen.append((d, t)))
        client.close()
    (request,) = sink.requests
    total = request.body_bytes
    assert seen[-1] == (total, total)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen) and len(seen) >= 3


def test_a_file_that_shrinks_mid_upload_aborts_at_once_rather_than_stalling(tmp_path):
    """The Content-Length was promised: a short body would only stall until the deadline."""
    path = tmp_path / "shrinks.mp4"
    path.write_bytes(os.urandom(4 << 20))

    def shrink(done: int, total: int) -> None:
        if done > 1 << 20:
            os.truncate(path, 1 << 20)

    with FastSink() as sink:
        client = TwelveLabsClient(sink.base_url, lambda: "k", io_timeout=3.0)
        try:
            client.create_task(path, index_id="idx", on_progress=shrink)
        except UploadAborted:
            pass
        except TransientError as exc:
            pytest.fail(f"stalled into a transport error instead of aborting: {exc}")
        else:
            pytest.fail("an upload of a file that shrank succeeded")
        finally:
            client.close()
    assert sink.requests == []


def test_a_ranged_reader_is_a_whole_put_body_of_exactly_its_range(tmp_path):
    """The body of one chunk of a multipart-asset upload (a PUT of one byte range)."""
    content = os.urandom((5 << 20) + 3)
    path = tmp_path / "chunked.mp4"
    path.write_bytes(content)
    offset, length = (2 << 20) + 1, (2 << 20) + 1
    with FastSink(digest=True) as sink, open(path, "rb") as fh:
        response = requests.put(sink.base_url + "/part/2",
                                data=RangedFileReader(fh, offset, length), timeout=10)
    assert response.status_code == 200
    (request,) = sink.requests
    assert int(request.headers["content-length"]) == request.body_bytes == length
    assert "transfer-encoding" not in request.headers
    assert request.sha256 == hashlib.sha256(content[offset:offset + length]).hexdigest()
