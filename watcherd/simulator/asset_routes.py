"""The HTTP side of the assets flow (state and rules: ``assets``).

``route`` answers the API routes once the key was checked (None: not an assets route);
``storage`` answers a PUT to a presigned URL, which needs no key: the storage host is not
Twelve Labs, and a request that brings the key anyway is recorded in ``key_leaks``.
Fault switches reach the storage path too, under the prefix ``/_storage``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from watcherd.simulator.catalog import Listing
from watcherd.simulator.multipart import ApiError, Body, parse_header
from watcherd.simulator.uploads import STORAGE_PREFIX, StorageRefusal

if TYPE_CHECKING:
    from watcherd.simulator.handler import Handler, RecordedRequest

MAX_JSON = 1 << 20
MULTIPART = ["assets", "multipart-uploads"]


def route(handler: Handler, rec: RecordedRequest, body: Body,
          parts: list[str]) -> tuple[int, Any] | None:
    fake = handler.server.fake
    method = handler.command
    origin = fake.base_url.rsplit("/", 1)[0]
    if parts[:2] == MULTIPART and fake.multipart_forbidden:
        raise ApiError(403, "forbidden", "Multipart uploads are not enabled for this account.")
    if parts == MULTIPART:
        if method == "POST":
            return 201, fake._create_upload(_json_body(handler, body), origin)
        if method == "GET":
            paging = Listing(rec.query)
            return 200, fake._incomplete(paging.page_no, paging.limit)
    elif parts[:2] == MULTIPART and len(parts) == 3:
        if method == "POST":
            return 200, fake._report(parts[2], _json_body(handler, body), origin)
        if method == "GET":
            paging = Listing(rec.query)
            return 200, fake._status(parts[2], paging.page_no, paging.limit)
    elif parts[:2] == MULTIPART and len(parts) == 4 and parts[3] == "presigned-urls" \
            and method == "POST":
        return 200, fake._presigned_urls(parts[2], _json_body(handler, body), origin)
    elif len(parts) == 2 and parts[0] == "assets" and method == "GET":
        return 200, fake._asset_json(parts[1])
    elif len(parts) == 3 and parts[::2] == ["assets", "indexed-assets"] and method == "GET":
        paging = Listing(rec.query)
        return 200, fake._by_asset(parts[1], paging.page_no, paging.limit)
    elif len(parts) == 3 and parts[::2] == ["indexes", "indexed-assets"] and method == "GET":
        return 200, fake._list_indexed(parts[1], Listing(rec.query))
    elif len(parts) == 3 and parts[::2] == ["indexes", "indexed-assets"] and method == "POST":
        return 202, fake._index_asset(parts[1], _json_body(handler, body))
    elif len(parts) == 4 and parts[::2] == ["indexes", "indexed-assets"] and method == "GET":
        return 200, fake._indexed_json(parts[1], parts[3])
    return None


def is_storage(path: str) -> bool:
    return path.startswith(STORAGE_PREFIX)


def storage(handler: Handler, rec: RecordedRequest, body: Body) -> tuple[int, Any]:
    """``PUT <presigned url>``: store one chunk, answer its ETag (S3's quoted md5)."""
    fake = handler.server.fake
    if _carries_key(rec, fake.api_key):
        with fake._assets_lock:
            fake.key_leaks.append(rec)
    rec.answer_headers["Content-Type"] = "application/xml"
    try:
        if handler.command != "PUT":
            raise StorageRefusal(405, "MethodNotAllowed", "Only PUT is allowed here.")
        if body.chunked or "content-length" not in rec.headers:
            # S3 presigned PUTs take no chunked transfer encoding.
            raise StorageRefusal(411, "MissingContentLength",
                                 "You must provide the Content-Length HTTP header.")
        session, index = fake._take_url(rec.path[len(STORAGE_PREFIX):], rec.headers)
        etag = fake._store_chunk(session, index, body.pieces())
    except StorageRefusal as refusal:
        return refusal.status, refusal.xml()
    rec.answer_headers.pop("Content-Type")
    rec.answer_headers["ETag"] = etag
    return 200, b""


def _carries_key(rec: RecordedRequest, key: str) -> bool:
    return "x-api-key" in rec.headers or any(key in v for v in rec.headers.values()) \
        or any(key in v for values in rec.query.values() for v in values)


def _json_body(handler: Handler, body: Body) -> dict[str, Any]:
    mime, _ = parse_header(handler.headers.get("Content-Type", ""))
    if mime != "application/json":
        raise ApiError(400, "parameter_invalid", "The request body must be application/json.")
    data = b"".join(body.pieces(limit=MAX_JSON + 1))
    if len(data) > MAX_JSON:
        raise ApiError(400, "parameter_invalid", "The request body is too large.")
    try:
        parsed = json.loads(data)
    except ValueError:
        raise ApiError(400, "parameter_invalid", "The request body is not valid JSON.") from None
    if not isinstance(parsed, dict):
        raise ApiError(400, "parameter_invalid", "The request body must be a JSON object.")
    return parsed
