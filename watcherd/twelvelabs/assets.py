"""The current Twelve Labs ingest calls: multipart upload sessions, assets, indexed assets.

Facts: /work/shared/research/round2-assets-models-multihost.md sections 0 and 1. Every
API call goes through ``TwelveLabsClient._send``, so it has the client's key handling,
deadlines, rate-limit windows, redirect refusal and error classification. The one call
that does not is ``put_chunk``: a presigned URL belongs to the storage host, not to
Twelve Labs, so it goes out on its own session that has no way to add the API key, and
its answers are classified by storage rules (a refused URL means "ask for a fresh URL",
never "the API key is bad").

Where the note infers, both readings are handled: a chunk's ETag is reported without
its quotes (as the SDK does); ``GET /assets/{id}/indexed-assets`` may show the index as
an id or as an object.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, cast
from urllib.parse import urlsplit

import requests

from watcherd.errors import ApiError, AuthError, TransientError
from watcherd.twelvelabs.body import FileShrank, RangedFileReader
from watcherd.twelvelabs.client import (
    LIST_PAGE_LIMIT,
    BigBlockAdapter,
    TwelveLabsClient,
    _excerpt,
    _transport_error,
    retry_after_seconds,
)
from watcherd.twelvelabs.deadline import Deadline

MAX_URL_WINDOW = 50     # presigned URLs per request, the API's maximum
MULTIPART = "/assets/multipart-uploads"


class MultipartNotEnabled(ApiError):
    """403 on session create: this account may not use multipart uploads (a private
    preview on some plans). Nothing is wrong with the file or, necessarily, the key."""


class ChunkUrlRefused(TransientError):
    """The storage host refused a chunk PUT (URL used, expired, or the body refused):
    retry the chunk with a fresh URL, never the same one."""


@dataclass(frozen=True)
class ChunkUrl:
    chunk_index: int        # 1-based
    url: str
    expires_at: str


@dataclass(frozen=True)
class UploadSession:
    upload_id: str
    asset_id: str
    chunk_size: int
    total_chunks: int
    expires_at: str
    upload_headers: dict[str, str]
    upload_urls: tuple[ChunkUrl, ...]

    def chunk_range(self, index: int, total_size: int) -> tuple[int, int]:
        """(offset, length) of 1-based chunk ``index`` in a file of ``total_size`` bytes."""
        return chunk_range(index, self.chunk_size, total_size)


def chunk_range(index: int, chunk_size: int, total_size: int) -> tuple[int, int]:
    """(offset, length) of 1-based chunk ``index``: every chunk ``chunk_size`` bytes but
    the last, which holds the rest."""
    offset = (index - 1) * chunk_size
    return offset, min(chunk_size, total_size - offset)


@dataclass(frozen=True)
class CompletedChunk:
    chunk_index: int
    etag: str
    chunk_size: int

    def report_json(self) -> dict[str, Any]:
        return {"chunk_index": self.chunk_index, "proof": self.etag.strip('"'),
                "proof_type": "etag", "chunk_size": self.chunk_size}


class AssetsApi:
    """The assets-flow calls, on top of one ``TwelveLabsClient``."""

    def __init__(self, client: TwelveLabsClient, *, connections: int = 10) -> None:
        self.client = client
        # The storage session: no key provider, no default headers beyond the agent.
        # Its pool keeps ``connections`` sockets per storage host (the chunk PUTs in
        # flight at most): a smaller pool would open and discard one per extra PUT.
        self.storage = requests.Session()
        for scheme in ("https://", "http://"):
            self.storage.mount(scheme, BigBlockAdapter(pool_maxsize=connections))
        self.storage.headers["User-Agent"] = client.session.headers["User-Agent"]

    def close(self) -> None:
        self.storage.close()

    # -- upload sessions ------------------------------------------------------------

    def create_upload(self, filename: str, total_size: int, *, kind: str = "video",
                      user_metadata: dict[str, Any] | None = None) -> UploadSession:
        """``POST /assets/multipart-uploads``. A lost answer may still have created the
        session (``maybe_created``); the list of incomplete sessions can find it."""
        body: dict[str, Any] = {"filename": filename, "type": kind, "total_size": total_size}
        if user_metadata:
            body["user_metadata"] = user_metadata
        try:
            answer = self._create(MULTIPART, body)
        except AuthError as exc:
            if exc.status != 403:
                raise
            raise MultipartNotEnabled(exc.status, exc.code, exc.message) from exc
        try:
            return UploadSession(
                str(answer["upload_id"]), str(answer["asset_id"]), int(answer["chunk_size"]),
                int(answer["total_chunks"]), str(answer["expires_at"]),
                {str(k): str(v) for k, v in (answer.get("upload_headers") or {}).items()},
                _urls(answer))
        except (KeyError, TypeError, ValueError) as exc:
            raise TransientError(201, None, f"POST {MULTIPART} answered without "
                                 f"{exc}: {answer}", maybe_created=True) from None

    def request_urls(self, upload_id: str, start: int, count: int) -> tuple[ChunkUrl, ...]:
        """Fresh one-time URLs for chunks ``start`` .. ``start + count - 1`` (1-based)."""
        if not 1 <= count <= MAX_URL_WINDOW:
            raise ValueError(f"count must be 1..{MAX_URL_WINDOW}, not {count}")
        path = f"{MULTIPART}/{upload_id}/presigned-urls"
        return _urls(self.client._json(
            self.client._send("POST", path, json={"start": start, "count": count})))

    def report_chunks(self, upload_id: str,
                      chunks: Sequence[CompletedChunk]) -> dict[str, Any]:
        """Report chunks whose PUT answered an ETag; reporting one twice is harmless."""
        body = {"completed_chunks": [c.report_json() for c in chunks]}
        return self.client._json(
            self.client._send("POST", f"{MULTIPART}/{upload_id}", json=body))

    def upload_status(self, upload_id: str, *, max_pages: int = 400) -> dict[str, Any]:
        """``GET /assets/multipart-uploads/{id}``, every page: ``uploaded_chunks`` holds
        all of them (a 10,000-chunk session has 200 pages)."""
        first: dict[str, Any] = {}
        chunks: list[dict[str, Any]] = []
        for page in _pages(self.client, f"{MULTIPART}/{upload_id}", {}, max_pages):
            first = first or page
            chunks.extend(page.get("uploaded_chunks") or [])
        return {**first, "uploaded_chunks": chunks}

    def list_incomplete_uploads(self, *, max_pages: int = 10) -> list[dict[str, Any]]:
        return [item for page in _pages(self.client, MULTIPART, {}, max_pages)
                for item in page.get("data") or []]

    # -- the storage side -----------------------------------------------------------

    def put_chunk(self, url: str, path: str | os.PathLike[str], offset: int, length: int,
                  upload_headers: dict[str, str], *,
                  on_progress: Callable[[int], None] | None = None) -> str:
        """PUT bytes ``offset .. offset + length`` of the file to a presigned URL; returns
        the ETag. The body is read from the file as it is sent, never copied whole.
        ``on_progress`` gets the bytes sent so far."""
        stall = Deadline(sum(self.client.timeout))
        headers = {**upload_headers, "Content-Type": "application/octet-stream",
                   "Content-Length": str(length)}
        with open(path, "rb") as fh:
            body = FileRange(fh, offset, length, stall, on_progress)
            with stall:
                try:
                    # cast: requests' stubs want read() -> bytes; urllib3 sends any buffer.
                    response = self.storage.put(url, data=cast(Any, body), headers=headers,
                                                timeout=self.client.timeout,
                                                allow_redirects=False)
                except requests.RequestException as exc:
                    error = _transport_error("PUT", "<chunk url>", exc, stall)
                    raise _without_url(error, url) from None
        return _etag(response)

    # -- assets and indexed assets ----------------------------------------------------

    def get_asset(self, asset_id: str) -> dict[str, Any]:
        return self.client._json(self.client._send("GET", f"/assets/{asset_id}"))

    def create_indexed_asset(self, index_id: str, asset_id: str, *,
                             user_metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        """``POST /indexes/{id}/indexed-assets`` (the asset must be ``ready``); returns
        ``{_id, asset_id}``. A lost answer may still have indexed it: check
        ``list_indexed_assets_by_asset`` before sending again."""
        body: dict[str, Any] = {"asset_id": asset_id}
        if user_metadata:
            body["user_metadata"] = user_metadata
        answer = self._create(f"/indexes/{index_id}/indexed-assets", body)
        if not answer.get("_id"):
            raise TransientError(202, None, f"indexing answered without an id: {answer}",
                                 maybe_created=True)
        return answer

    def get_indexed_asset(self, index_id: str, indexed_asset_id: str) -> dict[str, Any]:
        return self.client._json(self.client._send(
            "GET", f"/indexes/{index_id}/indexed-assets/{indexed_asset_id}"))

    def list_indexed_assets(self, index_id: str, *, statuses: Sequence[str] = (),
                            max_pages: int = 10) -> list[dict[str, Any]]:
        """``GET /indexes/{id}/indexed-assets`` with these statuses (no user_metadata)."""
        params: dict[str, Any] = {"status": list(statuses)} if statuses else {}
        return [item for page in _pages(self.client, f"/indexes/{index_id}/indexed-assets",
                                        params, max_pages)
                for item in page.get("data") or []]

    def list_indexed_assets_by_asset(self, asset_id: str, *,
                                     max_pages: int = 10) -> list[dict[str, str]]:
        """``[{_id, index_id}]`` for every indexed asset made from this asset."""
        items = [item for page in _pages(self.client, f"/assets/{asset_id}/indexed-assets",
                                         {}, max_pages)
                 for item in page.get("data") or []]
        return [{"_id": str(item["_id"]), "index_id": _index_id(item.get("index"))}
                for item in items if isinstance(item, dict) and item.get("_id")]

    def _create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """A POST that creates something: an answer lost after the request was sent may
        have created it anyway (a 408/429 refused the request, so nothing exists)."""
        try:
            return self.client._json(self.client._send("POST", path, json=body))
        except TransientError as exc:
            exc.maybe_created = exc.status is None or exc.status >= 500
            raise


class FileRange:
    """A chunk's body: the file's own bytes (``body.RangedFileReader``, no copy per
    block), each read counting as progress for the stall deadline."""

    def __init__(self, fh: BinaryIO, offset: int, length: int, stall: Deadline,
                 on_progress: Callable[[int], None] | None) -> None:
        self.reader = RangedFileReader(fh, offset, length)
        self.stall, self.on_progress = stall, on_progress

    def __len__(self) -> int:
        return len(self.reader)

    @property
    def sent(self) -> int:
        return self.reader.position

    def read(self, size: int = -1, /) -> memoryview:
        try:
            data = self.reader.read(size)
        except FileShrank as exc:
            raise TransientError(None, "file_shrank", str(exc)) from exc
        if data:
            self.stall.extend()
            if self.on_progress is not None:
                self.on_progress(self.reader.position)
        return data


def _etag(response: requests.Response) -> str:
    status = response.status_code
    if 200 <= status < 300:
        etag = response.headers.get("ETag")
        if not etag:
            raise TransientError(status, None, "the chunk PUT answered without an ETag")
        return etag
    message = f"PUT <chunk url>: {_excerpt(response) or response.reason}"
    if status in (408, 429) or status >= 500:
        raise TransientError(status, None, message, retry_after=retry_after_seconds(response))
    raise ChunkUrlRefused(status, None, message)


def _without_url(error: TransientError, url: str) -> TransientError:
    """A presigned URL is a credential for its chunk until it expires: keep it out of
    messages that end up in logs (transport errors quote the URL's path and query)."""
    parts = urlsplit(url)
    message = error.message
    for secret in (f"{parts.path}?{parts.query}", parts.query, parts.path):
        if secret and secret != "?":
            message = message.replace(secret, "<chunk url>")
    return TransientError(error.status, error.code, message, retry_after=error.retry_after)


def _urls(answer: dict[str, Any]) -> tuple[ChunkUrl, ...]:
    return tuple(ChunkUrl(int(u["chunk_index"]), str(u["url"]), str(u.get("expires_at", "")))
                 for u in answer.get("upload_urls") or [])


def _index_id(index: Any) -> str:
    if isinstance(index, dict):
        return str(index.get("_id") or index.get("index_id") or "")
    return str(index or "")


def _pages(client: TwelveLabsClient, path: str, params: dict[str, Any],
           max_pages: int) -> Iterator[dict[str, Any]]:
    for page in range(1, max_pages + 1):
        body = client._json(client._send(
            "GET", path, params={**params, "page": page, "page_limit": LIST_PAGE_LIMIT}))
        yield body
        total_pages = (body.get("page_info") or {}).get("total_page") or 1
        if page >= total_pages:
            return
