"""Multipart upload sessions and the storage host their presigned URLs point at.

Follows /work/shared/research/round2-assets-models-multihost.md section 1.2. Where the
note infers, the simulator takes the strict reading: chunk indexes are 1-based (``start``
is documented 1-based); each presigned URL takes one PUT, accepted or not; a report
needs the ETag of a chunk the storage received (quotes optional, as the SDK strips them);
an expired session answers its status with ``expired`` and refuses URLs and reports with
400 ``upload_expired``. The asset a session reserves lives here too (``assets`` makes it
ready and indexes it); ``asset_routes`` is the HTTP side.
"""

from __future__ import annotations

import hashlib
import math
import mimetypes
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

from watcherd.simulator import usermetadata
from watcherd.simulator.catalog import rfc3339
from watcherd.simulator.multipart import ApiError

STORAGE_PREFIX = "/_storage/"       # presigned URLs: outside /<api_version>, no key needed
DEFAULT_CHUNK_SIZE = 5 << 20        # what the documentation's examples show
MAX_PARTS = 10_000                  # S3's part limit: larger files get larger chunks
MAX_WINDOW = 50                     # URLs per presigned-urls call, and per create answer
MAX_VIDEO_SIZE = 10 << 30           # multipart video/audio: 10 GB
MAX_IMAGE_SIZE = 32 << 20
UPLOAD_TYPES = ("video", "audio", "image")


@dataclass
class StoredChunk:
    etag: str                       # md5 hex of the bytes, unquoted
    size: int
    at_ms: int


@dataclass
class PresignedUrl:
    token: str
    upload_id: str
    chunk_index: int
    expires_ms: int
    used: bool = False


@dataclass
class UploadSession:
    upload_id: str
    asset_id: str
    filename: str
    total_size: int
    chunk_size: int
    total_chunks: int
    created_ms: int
    expires_ms: int
    updated_ms: int
    stored: dict[int, StoredChunk] = field(default_factory=dict)
    reported: dict[int, int] = field(default_factory=dict)  # chunk index -> when (ms)
    duplicates: int = 0
    completed_at: float | None = None                      # monotonic

    def expected_size(self, index: int) -> int:
        return min(self.chunk_size, self.total_size - (index - 1) * self.chunk_size)


@dataclass
class Asset:
    _id: str
    filename: str
    file_type: str
    created_ms: int
    user_metadata: dict[str, Any] | None
    size: int
    upload_id: str
    sha256: str | None = None       # of the assembled bytes, when the fake has a store_dir



class UploadSessions:
    """The account's upload sessions and the assets they reserve.

    Test controls: ``multipart_chunk_size`` (the server's choice; small in tests),
    ``initial_url_count`` (URLs in the create answer), ``url_ttl_seconds``,
    ``session_ttl_seconds``, ``upload_headers`` (sent back in the create answer and then
    required on every chunk PUT, like signed S3 headers), ``multipart_forbidden`` (403 on
    every multipart route), ``expire_upload()``. What a test reads back:
    ``uploads_by_id``, ``assets`` and ``key_leaks`` (storage requests that carried the
    API key).
    """

    def __init__(self, now_ms: Callable[[], int], store_dir: Path | None) -> None:
        self._now = now_ms
        self._store = store_dir
        self._assets_lock = threading.Lock()
        self.multipart_chunk_size = DEFAULT_CHUNK_SIZE
        self.initial_url_count = MAX_WINDOW
        self.url_ttl_seconds = 3600.0
        self.session_ttl_seconds = 24 * 3600.0
        self.upload_headers: dict[str, str] = {}
        self.multipart_forbidden = False
        self.uploads_by_id: dict[str, UploadSession] = {}
        self.assets: dict[str, Asset] = {}
        self.key_leaks: list[Any] = []  # RecordedRequest of storage requests with the key
        self._urls: dict[str, PresignedUrl] = {}

    def expire_upload(self, upload_id: str) -> None:
        with self._assets_lock:
            self.uploads_by_id[upload_id].expires_ms = self._now() - 1

    # -- sessions -----------------------------------------------------------------

    def _create_upload(self, body: dict[str, Any], origin: str) -> dict[str, Any]:
        filename, kind, total = body.get("filename"), body.get("type"), body.get("total_size")
        if not isinstance(filename, str) or not filename:
            raise invalid_parameter("filename")
        if kind not in UPLOAD_TYPES:
            raise invalid_parameter("type")
        limit = MAX_IMAGE_SIZE if kind == "image" else MAX_VIDEO_SIZE
        if not _is_int(total) or not 1 <= total <= limit:
            raise invalid_parameter("total_size")
        for name in ("enable_hls", "enable_thumbnail"):
            if name in body and not isinstance(body[name], bool):
                raise invalid_parameter(name)
        metadata = user_metadata_of(body)
        chunk_size = max(self.multipart_chunk_size, math.ceil(total / MAX_PARTS))
        now = self._now()
        session = UploadSession(secrets.token_hex(12), secrets.token_hex(12), filename, total,
                                chunk_size, math.ceil(total / chunk_size), now,
                                now + int(self.session_ttl_seconds * 1000), now)
        asset = Asset(session.asset_id, filename,
                      mimetypes.guess_type(filename)[0] or "application/octet-stream",
                      now, metadata, total, session.upload_id)
        with self._assets_lock:
            self.uploads_by_id[session.upload_id] = session
            self.assets[asset._id] = asset
            urls = self._new_urls(session, 1, min(self.initial_url_count, MAX_WINDOW), origin)
        return {"upload_id": session.upload_id, "asset_id": session.asset_id,
                "upload_urls": urls, "upload_headers": dict(self.upload_headers),
                "chunk_size": chunk_size, "total_chunks": session.total_chunks,
                "expires_at": rfc3339(session.expires_ms)}

    def _presigned_urls(self, upload_id: str, body: dict[str, Any],
                        origin: str) -> dict[str, Any]:
        start, count = body.get("start"), body.get("count")
        with self._assets_lock:
            session = self._active(upload_id)
            if not _is_int(start) or not 1 <= start <= session.total_chunks:
                raise invalid_parameter("start")
            if not _is_int(count) or not 1 <= count <= MAX_WINDOW:
                raise invalid_parameter("count")
            urls = self._new_urls(session, start, count, origin)
        now = self._now()
        return {"upload_id": upload_id, "start_index": start, "count": len(urls),
                "upload_urls": urls, "generated_at": rfc3339(now),
                "expires_at": rfc3339(now + int(self.url_ttl_seconds * 1000))}

    def _new_urls(self, session: UploadSession, start: int, count: int,
                  origin: str) -> list[dict[str, Any]]:
        expires = self._now() + int(self.url_ttl_seconds * 1000)
        out = []
        for index in range(start, min(start + count, session.total_chunks + 1)):
            url = PresignedUrl(secrets.token_urlsafe(18), session.upload_id, index, expires)
            self._urls[url.token] = url
            out.append({"chunk_index": index, "url": origin + STORAGE_PREFIX + url.token,
                        "expires_at": rfc3339(expires)})
        return out

    def _report(self, upload_id: str, body: dict[str, Any], origin: str) -> dict[str, Any]:
        chunks = body.get("completed_chunks")
        if not isinstance(chunks, list) or not chunks:
            raise invalid_parameter("completed_chunks")
        with self._assets_lock:
            session = self._active(upload_id)
            checked = [self._checked_report(session, item) for item in chunks]
            processed = duplicates = 0
            now = self._now()
            for index in checked:  # the whole batch was valid: apply it
                if index in session.reported:
                    duplicates += 1
                else:
                    session.reported[index] = now
                    processed += 1
            session.duplicates += duplicates
            session.updated_ms = now
            done = len(session.reported) == session.total_chunks
            completing = done and session.completed_at is None
            if completing:
                session.completed_at = time.monotonic()
        if completing:  # outside the lock: a big file takes a while to put together
            self.assets[session.asset_id].sha256 = self._assemble(session)
        out: dict[str, Any] = {"asset_id": session.asset_id, "processed_chunks": processed,
                               "duplicate_chunks": duplicates,
                               "total_completed": len(session.reported)}
        if done:
            out["url"] = f"{origin}{STORAGE_PREFIX}assets/{session.asset_id}"
        return out

    def _checked_report(self, session: UploadSession, item: Any) -> int:
        if not isinstance(item, dict):
            raise invalid_parameter("completed_chunks")
        index, proof = item.get("chunk_index"), item.get("proof")
        if not _is_int(index) or not 1 <= index <= session.total_chunks:
            raise invalid_parameter("chunk_index")
        if item.get("proof_type") != "etag":
            raise invalid_parameter("proof_type")
        if item.get("chunk_size") != session.expected_size(index):
            raise invalid_parameter("chunk_size")
        stored = session.stored.get(index)
        if not isinstance(proof, str) or stored is None or proof.strip('"') != stored.etag:
            raise ApiError(400, "invalid_proof",
                           f"The proof for chunk {index} does not match an uploaded chunk.")
        return index

    def _status(self, upload_id: str, page: int, limit: int) -> dict[str, Any]:
        with self._assets_lock:
            session = self._session(upload_id)
            status = self._session_status(session)
            chunks = [self._chunk_json(session, i) for i in range(1, session.total_chunks + 1)]
            uploaded = sum(session.expected_size(i) for i in session.reported)
        done = len(session.reported)
        return {"upload_id": upload_id, "status": status,
                "uploaded_chunks": chunks[(page - 1) * limit: page * limit],
                "chunks_completed": done, "chunks_failed": 0,
                "chunks_pending": session.total_chunks - done,
                "total_size": session.total_size, "uploaded_size": uploaded,
                "created_at": rfc3339(session.created_ms),
                "updated_at": rfc3339(session.updated_ms),
                "page_info": page_info(len(chunks), page, limit)}

    def _chunk_json(self, session: UploadSession, index: int) -> dict[str, Any]:
        at = session.reported.get(index)
        return {"index": index, "status": "pending" if at is None else "completed",
                "uploaded_at": None if at is None else rfc3339(at),
                "updated_at": rfc3339(at or session.created_ms), "error": None}

    def _incomplete(self, page: int, limit: int) -> dict[str, Any]:
        with self._assets_lock:
            active = [s for s in self.uploads_by_id.values()
                      if self._session_status(s) == "active"]
        active.sort(key=lambda s: s.created_ms, reverse=True)
        data = [{"upload_id": s.upload_id, "status": "active", "total_size": s.total_size,
                 "chunk_size": s.chunk_size, "total_chunks": s.total_chunks,
                 "created_at": rfc3339(s.created_ms), "expires_at": rfc3339(s.expires_ms)}
                for s in active]
        return {"data": data[(page - 1) * limit: page * limit],
                "page_info": page_info(len(data), page, limit)}

    def _session(self, upload_id: str) -> UploadSession:
        session = self.uploads_by_id.get(upload_id)
        if session is None:
            raise ApiError(404, "not_found", "Upload not found.")
        return session

    def _active(self, upload_id: str) -> UploadSession:
        session = self._session(upload_id)
        status = self._session_status(session)
        if status != "active":
            raise ApiError(400, f"upload_{status}", f"The upload session is {status}.")
        return session

    def _session_status(self, session: UploadSession) -> str:
        if session.completed_at is not None:
            return "completed"
        return "expired" if self._now() > session.expires_ms else "active"

    # -- the storage side -----------------------------------------------------------

    def _take_url(self, token: str, headers: dict[str, str]) -> tuple[UploadSession, int]:
        """The session and chunk a PUT to this URL is for; the URL is spent either way."""
        with self._assets_lock:
            url = self._urls.get(token)
            if url is None or url.used:
                raise _storage_refusal(403, "AccessDenied", "The URL was already used or "
                                       "never existed.")
            url.used = True
            if self._now() > url.expires_ms:
                raise _storage_refusal(403, "AccessDenied", "Request has expired")
            missing = [k for k, v in self.upload_headers.items() if headers.get(k.lower()) != v]
            if missing:
                raise _storage_refusal(403, "SignatureDoesNotMatch",
                                       f"Missing signed header {missing[0]}")
            session = self.uploads_by_id[url.upload_id]
        if self._session_status(session) != "active":
            raise _storage_refusal(404, "NoSuchUpload", "The upload does not exist.")
        return session, url.chunk_index

    def _store_chunk(self, session: UploadSession, index: int,
                     pieces: Iterator[bytes]) -> str:
        """Hash (and keep, with a store_dir) the chunk; its ETag, quoted."""
        md5, size = hashlib.md5(usedforsecurity=False), 0
        sink = (self._chunk_path(session, index).open("wb")
                if self._store is not None else None)
        try:
            for piece in pieces:
                md5.update(piece)
                size += len(piece)
                if sink is not None:
                    sink.write(piece)
        finally:
            if sink is not None:
                sink.close()
        if size != session.expected_size(index):
            raise _storage_refusal(400, "InvalidPartSize",
                                   f"Chunk {index} must be {session.expected_size(index)} "
                                   f"bytes, got {size}.")
        with self._assets_lock:
            session.stored[index] = StoredChunk(md5.hexdigest(), size, self._now())
        return f'"{md5.hexdigest()}"'

    def _chunk_path(self, session: UploadSession, index: int) -> Path:
        assert self._store is not None
        return self._store / f"{session.upload_id}.{index:05d}.chunk"

    def _assemble(self, session: UploadSession) -> str | None:
        if self._store is None:
            return None
        sha = hashlib.sha256()
        with (self._store / f"{session.asset_id}.bin").open("wb") as out:
            for index in range(1, session.total_chunks + 1):
                data = self._chunk_path(session, index).read_bytes()
                sha.update(data)
                out.write(data)
        return sha.hexdigest()


def user_metadata_of(body: dict[str, Any]) -> dict[str, Any] | None:
    """``user_metadata`` is a JSON object here (not a string, unlike ``/tasks``)."""
    return usermetadata.checked(body.get("user_metadata"))


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def page_info(total: int, page: int, limit: int) -> dict[str, int]:
    return {"limit_per_page": limit, "page": page, "total_page": math.ceil(total / limit),
            "total_results": total}


def invalid_parameter(name: str) -> ApiError:
    return ApiError(400, "parameter_invalid", f"The `{name}` parameter is invalid.")


class StorageRefusal(ApiError):
    """An answer from the storage host (S3 shape: XML, not the API's JSON)."""

    def xml(self) -> str:
        return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{self.code}</Code>'
                f"<Message>{self.message}</Message></Error>")


def _storage_refusal(status: int, code: str, message: str) -> StorageRefusal:
    return StorageRefusal(status, code, message)
