"""The simulated assets flow: multipart upload sessions, assets, indexed assets.

Follows /work/shared/research/round2-assets-models-multihost.md sections 0 and 1. Where
the note infers, the simulator picks the strict reading and a test switch gives the
other: chunk indexes are 1-based (``start`` is documented 1-based); each presigned URL
takes one PUT, accepted or not; a report needs the ETag of a chunk the storage received
(quotes optional, as the SDK strips them); an expired session answers its status with
``expired`` and refuses URLs and reports with 400 ``upload_expired``.
``asset_routes`` is the HTTP side; this module holds state and rules only.
"""

from __future__ import annotations

import hashlib
import math
import mimetypes
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

from watcherd.simulator.catalog import Progression, rfc3339
from watcherd.simulator.multipart import ApiError

STORAGE_PREFIX = "/_storage/"       # presigned URLs: outside /<api_version>, no key needed
DEFAULT_CHUNK_SIZE = 5 << 20        # what the documentation's examples show
MAX_PARTS = 10_000                  # S3's part limit: larger files get larger chunks
MAX_WINDOW = 50                     # URLs per presigned-urls call, and per create answer
MAX_VIDEO_SIZE = 10 << 30           # multipart video/audio: 10 GB
MAX_IMAGE_SIZE = 32 << 20
UPLOAD_TYPES = ("video", "audio", "image")
DEFAULT_INDEXED_PROGRESSION: Progression = (
    ("pending", 0.0), ("queued", 0.02), ("indexing", 0.05), ("validating", 0.2),
    ("ready", 0.3))


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


@dataclass
class IndexedAsset:
    _id: str
    index_id: str
    asset_id: str
    created_ms: int
    started: float                  # monotonic
    user_metadata: dict[str, Any] | None


class AssetStore:
    """The account's upload sessions, assets and indexed assets.

    Test controls: ``multipart_chunk_size`` (the server's choice; small in tests),
    ``initial_url_count`` (URLs in the create answer), ``url_ttl_seconds``,
    ``session_ttl_seconds``, ``upload_headers`` (sent back in the create answer and then
    required on every chunk PUT, like signed S3 headers), ``asset_ready_after``,
    ``multipart_forbidden`` (403 on every multipart route), ``fail_assets()``,
    ``indexed_progression``, ``index_shape_in_list`` ("id" or "object": how
    ``GET /assets/{id}/indexed-assets`` shows the index), ``expire_upload()``.
    What a test reads back: ``uploads_by_id``, ``assets``, ``indexed_assets`` and
    ``key_leaks`` (storage requests that carried the API key).
    """

    def __init__(self, now_ms: Callable[[], int], index_exists: Callable[[str], bool],
                 indexing_failure: Callable[[str], str | None],
                 store_dir: Path | None) -> None:
        self._now = now_ms
        self._index_exists = index_exists
        self._indexing_failure = indexing_failure
        self._store = store_dir
        self._assets_lock = threading.Lock()
        self.multipart_chunk_size = DEFAULT_CHUNK_SIZE
        self.initial_url_count = MAX_WINDOW
        self.url_ttl_seconds = 3600.0
        self.session_ttl_seconds = 24 * 3600.0
        self.upload_headers: dict[str, str] = {}
        self.asset_ready_after = 0.05
        self.multipart_forbidden = False
        self.indexed_progression: Progression = DEFAULT_INDEXED_PROGRESSION
        self.index_shape_in_list = "id"
        self.uploads_by_id: dict[str, UploadSession] = {}
        self.assets: dict[str, Asset] = {}
        self.indexed_assets: dict[str, IndexedAsset] = {}
        self.key_leaks: list[Any] = []  # RecordedRequest of storage requests with the key
        self._urls: dict[str, PresignedUrl] = {}
        self._failing_assets: dict[str, str] = {}

    # -- test controls ------------------------------------------------------------

    def fail_assets(self, filenames: Iterable[str],
                    message: str = "The file could not be processed.") -> None:
        with self._assets_lock:
            self._failing_assets.update(dict.fromkeys(filenames, message))

    def expire_upload(self, upload_id: str) -> None:
        with self._assets_lock:
            self.uploads_by_id[upload_id].expires_ms = self._now() - 1

    # -- sessions -----------------------------------------------------------------

    def _create_upload(self, body: dict[str, Any], origin: str) -> dict[str, Any]:
        filename, kind, total = body.get("filename"), body.get("type"), body.get("total_size")
        if not isinstance(filename, str) or not filename:
            raise _invalid("filename")
        if kind not in UPLOAD_TYPES:
            raise _invalid("type")
        limit = MAX_IMAGE_SIZE if kind == "image" else MAX_VIDEO_SIZE
        if not _is_int(total) or not 1 <= total <= limit:
            raise _invalid("total_size")
        for name in ("enable_hls", "enable_thumbnail"):
            if name in body and not isinstance(body[name], bool):
                raise _invalid(name)
        metadata = _metadata(body)
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
                raise _invalid("start")
            if not _is_int(count) or not 1 <= count <= MAX_WINDOW:
                raise _invalid("count")
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
            raise _invalid("completed_chunks")
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
            if done and session.completed_at is None:
                session.completed_at = time.monotonic()
                self.assets[session.asset_id].sha256 = self._assemble(session)
        out: dict[str, Any] = {"asset_id": session.asset_id, "processed_chunks": processed,
                               "duplicate_chunks": duplicates,
                               "total_completed": len(session.reported)}
        if done:
            out["url"] = f"{origin}{STORAGE_PREFIX}assets/{session.asset_id}"
        return out

    def _checked_report(self, session: UploadSession, item: Any) -> int:
        if not isinstance(item, dict):
            raise _invalid("completed_chunks")
        index, proof = item.get("chunk_index"), item.get("proof")
        if not _is_int(index) or not 1 <= index <= session.total_chunks:
            raise _invalid("chunk_index")
        if item.get("proof_type") != "etag":
            raise _invalid("proof_type")
        if item.get("chunk_size") != session.expected_size(index):
            raise _invalid("chunk_size")
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
                "page_info": _page_info(len(chunks), page, limit)}

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
                "page_info": _page_info(len(data), page, limit)}

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

    # -- assets and indexed assets ----------------------------------------------------

    def _asset_status(self, asset: Asset) -> str:
        session = self.uploads_by_id[asset.upload_id]
        if session.completed_at is None \
                or time.monotonic() - session.completed_at < self.asset_ready_after:
            return "processing"
        return "failed" if asset.filename in self._failing_assets else "ready"

    def _asset_json(self, asset_id: str) -> dict[str, Any]:
        asset = self._asset(asset_id)
        status = self._asset_status(asset)
        out: dict[str, Any] = {"_id": asset._id, "method": "multipart", "status": status,
                               "filename": asset.filename, "file_type": asset.file_type,
                               "created_at": rfc3339(asset.created_ms)}
        if asset.user_metadata is not None:
            out["user_metadata"] = asset.user_metadata
        if status == "ready":
            out.update(size=asset.size, duration=None, technical_metadata={})
        if status == "failed":
            out["error"] = {"message": self._failing_assets[asset.filename]}
        return out

    def _asset(self, asset_id: str) -> Asset:
        asset = self.assets.get(asset_id)
        if asset is None:
            raise ApiError(404, "resource_not_exist",
                           f"Resource with id `{asset_id}` does not exist in `assets`.")
        return asset

    def _index_asset(self, index_id: str, body: dict[str, Any]) -> dict[str, Any]:
        self._known_index(index_id)
        asset_id = body.get("asset_id")
        if not isinstance(asset_id, str) or not asset_id:
            raise ApiError(400, "parameter_not_provided",
                           "The `asset_id` parameter is required but was not provided.")
        if "enable_video_stream" in body and not isinstance(body["enable_video_stream"], bool):
            raise _invalid("enable_video_stream")
        metadata = _metadata(body)
        asset = self._asset(asset_id)
        if self._asset_status(asset) != "ready":
            raise ApiError(400, "asset_not_ready", "The asset status must be `ready`.")
        item = IndexedAsset(secrets.token_hex(12), index_id, asset_id, self._now(),
                            time.monotonic(), metadata)
        with self._assets_lock:
            self.indexed_assets[item._id] = item
        return {"_id": item._id, "asset_id": asset_id}

    def _indexed_status(self, item: IndexedAsset) -> tuple[str, float]:
        elapsed = time.monotonic() - item.started
        steps = self.indexed_progression
        index = max([i for i, (_, at) in enumerate(steps) if at <= elapsed], default=0)
        status, at = steps[index]
        filename = self.assets[item.asset_id].filename
        if index == len(steps) - 1 and self._indexing_failure(filename) is not None:
            status = "failed"
        return status, at

    def _indexed_json(self, index_id: str, indexed_id: str) -> dict[str, Any]:
        self._known_index(index_id)
        item = self.indexed_assets.get(indexed_id)
        if item is None or item.index_id != index_id:
            raise ApiError(404, "resource_not_exist",
                           f"Resource with id `{indexed_id}` does not exist in "
                           "`indexed_assets`.")
        status, at = self._indexed_status(item)
        asset = self.assets[item.asset_id]
        changed = rfc3339(item.created_ms + int(at * 1000))
        return {"_id": item._id, "asset_id": item.asset_id,
                "created_at": rfc3339(item.created_ms), "updated_at": changed,
                "indexed_at": changed if status == "ready" else None, "status": status,
                "system_metadata": {"filename": asset.filename, "duration": None, "fps": None,
                                    "width": None, "height": None, "size": asset.size},
                "user_metadata": item.user_metadata, "hls": None}

    def _by_asset(self, asset_id: str, page: int, limit: int) -> dict[str, Any]:
        self._asset(asset_id)
        with self._assets_lock:
            items = [i for i in self.indexed_assets.values() if i.asset_id == asset_id]
        data = [{"_id": i._id, "index": i.index_id if self.index_shape_in_list == "id"
                 else {"_id": i.index_id}} for i in reversed(items)]
        return {"data": data[(page - 1) * limit: page * limit],
                "page_info": _page_info(len(data), page, limit)}

    def _known_index(self, index_id: str) -> None:
        if not self._index_exists(index_id):
            raise ApiError(404, "resource_not_exist",
                           f"Resource with id `{index_id}` does not exist in `indexes`.")


def _metadata(body: dict[str, Any]) -> dict[str, Any] | None:
    """``user_metadata`` is a JSON object here (not a string, unlike ``/tasks``)."""
    metadata = body.get("user_metadata")
    if metadata is None:
        return None
    if not isinstance(metadata, dict) or not all(
            isinstance(v, (str, int, float, bool)) or v is None
            or (isinstance(v, list) and all(isinstance(s, str) for s in v))
            for v in metadata.values()):
        raise _invalid("user_metadata")
    return metadata


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _page_info(total: int, page: int, limit: int) -> dict[str, int]:
    return {"limit_per_page": limit, "page": page, "total_page": math.ceil(total / limit),
            "total_results": total}


def _invalid(name: str) -> ApiError:
    return ApiError(400, "parameter_invalid", f"The `{name}` parameter is invalid.")


class StorageRefusal(ApiError):
    """An answer from the storage host (S3 shape: XML, not the API's JSON)."""

    def xml(self) -> str:
        return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{self.code}</Code>'
                f"<Message>{self.message}</Message></Error>")


def _storage_refusal(status: int, code: str, message: str) -> StorageRefusal:
    return StorageRefusal(status, code, message)
