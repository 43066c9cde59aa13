"""The simulated assets flow after the upload: assets that become ready or fail, and
indexed assets (research round 2, sections 1.1 and 1.3).

An upload session (``uploads``) reserves its asset; here the asset becomes ``ready``
(or ``failed``) ``asset_ready_after`` seconds after its session completed, and is indexed
into an index with ``POST /indexes/{id}/indexed-assets``. An indexed asset's status is
derived on each read from the time since it was created, like a task's.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from watcherd.simulator.catalog import Listing, Progression, rfc3339
from watcherd.simulator.multipart import ApiError
from watcherd.simulator.uploads import (
    Asset,
    UploadSessions,
    invalid_parameter,
    page_info,
    user_metadata_of,
)

DEFAULT_INDEXED_PROGRESSION: Progression = (
    ("pending", 0.0), ("queued", 0.02), ("indexing", 0.05), ("validating", 0.2),
    ("ready", 0.3))


@dataclass
class IndexedAsset:
    _id: str
    index_id: str
    asset_id: str
    created_ms: int
    started: float                  # monotonic
    user_metadata: dict[str, Any] | None


class AssetStore(UploadSessions):
    """Upload sessions (``UploadSessions``), plus assets and indexed assets.

    Test controls: ``asset_ready_after``, ``fail_assets()``, ``indexed_progression``,
    ``index_shape_in_list`` ("id" or "object": how ``GET /assets/{id}/indexed-assets``
    shows the index; the note does not say which). An indexed asset fails when its
    filename is one the catalog's ``fail_filenames`` names. What a test reads back:
    ``indexed_assets``, and what ``UploadSessions`` lists.
    """

    def __init__(self, now_ms: Callable[[], int], index_exists: Callable[[str], bool],
                 indexing_failure: Callable[[str], str | None],
                 store_dir: Path | None) -> None:
        super().__init__(now_ms, store_dir)
        self._index_exists = index_exists
        self._indexing_failure = indexing_failure
        self.asset_ready_after = 0.05
        self.indexed_progression: Progression = DEFAULT_INDEXED_PROGRESSION
        self.index_shape_in_list = "id"
        self.indexed_assets: dict[str, IndexedAsset] = {}
        self._failing_assets: dict[str, str] = {}

    def fail_assets(self, filenames: Iterable[str],
                    message: str = "The file could not be processed.") -> None:
        with self._assets_lock:
            self._failing_assets.update(dict.fromkeys(filenames, message))

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
            raise invalid_parameter("enable_video_stream")
        metadata = user_metadata_of(body)
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

    def _list_indexed(self, index_id: str, listing: Listing) -> dict[str, Any]:
        """``GET /indexes/{id}/indexed-assets``: filtered by ``status`` (repeatable); list
        items carry no ``user_metadata`` (the schema's ``IndexedAsset``)."""
        self._known_index(index_id)
        statuses = {s for v in listing.query.get("status", []) for s in v.split(",") if s}
        with self._assets_lock:
            ids = [i._id for i in self.indexed_assets.values() if i.index_id == index_id]
        items = [self._indexed_json(index_id, i) for i in ids]
        return listing.page([{k: v for k, v in item.items() if k != "user_metadata"}
                             for item in items if not statuses or item["status"] in statuses])

    def _by_asset(self, asset_id: str, page: int, limit: int) -> dict[str, Any]:
        self._asset(asset_id)
        with self._assets_lock:
            items = [i for i in self.indexed_assets.values() if i.asset_id == asset_id]
        data = [{"_id": i._id, "index": i.index_id if self.index_shape_in_list == "id"
                 else {"_id": i.index_id}} for i in reversed(items)]
        return {"data": data[(page - 1) * limit: page * limit],
                "page_info": page_info(len(data), page, limit)}

    def _known_index(self, index_id: str) -> None:
        if not self._index_exists(index_id):
            raise ApiError(404, "resource_not_exist",
                           f"Resource with id `{index_id}` does not exist in `indexes`.")
