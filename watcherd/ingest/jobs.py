"""What the poller follows for one file: a ``/tasks`` task, or an indexed asset.

A row uploaded through ``POST /tasks`` (``upload_method`` NULL or "tasks") is
followed with ``GET /tasks``; a row on the multipart path, once its indexed
asset exists, with ``GET /indexes/{id}/indexed-assets``. Both answer a job
with a ``status`` that ends ``ready`` or ``failed``, and both can be listed per
index filtered by status, so the poller treats them alike through ``Jobs``.
Until the indexed asset exists a multipart row is the indexer's
(``indexing.AssetIndexer``), not a job.
"""

from __future__ import annotations

from typing import Any, Protocol

from watcherd.config import MULTIPART
from watcherd.state.schema import FileRecord
from watcherd.state.states import (
    INDEXED_ASSET_STATUSES,
    KNOWN_TASK_STATUSES,
    TERMINAL_TASK_STATUSES,
)
from watcherd.twelvelabs.client import TwelveLabsClient

RUNNING_TASK_STATUSES = tuple(s for s in KNOWN_TASK_STATUSES if s not in TERMINAL_TASK_STATUSES)
RUNNING_INDEXED_STATUSES = tuple(s for s in INDEXED_ASSET_STATUSES
                                 if s not in TERMINAL_TASK_STATUSES)


def on_multipart(record: FileRecord) -> bool:
    return record.upload_method == MULTIPART


def awaiting_indexed_asset(record: FileRecord) -> bool:
    """A multipart row whose asset is uploaded but not yet indexed (the indexer's)."""
    return on_multipart(record) and record.indexed_asset_id is None


def job_label(record: FileRecord) -> str:
    """What is being waited for, as a log line or reason names it."""
    if awaiting_indexed_asset(record):
        return f"asset {record.asset_id}"
    if on_multipart(record):
        return f"indexed asset {record.indexed_asset_id}"
    return f"task {record.task_id}"


def still(record: FileRecord) -> str:
    """Where the job is stuck, for a timeout's reason: "task t1 still indexing"."""
    if awaiting_indexed_asset(record) and record.remote_status == "ready":
        return f"{job_label(record)} ready but not indexed"
    return f"{job_label(record)} still {record.remote_status or 'not finished'}"


class AssetCalls(Protocol):
    """The ``twelvelabs.assets.AssetsApi`` calls the poller and the indexer make."""

    def get_asset(self, asset_id: str) -> dict[str, Any]: ...

    def create_indexed_asset(self, index_id: str, asset_id: str, *,
                             user_metadata: dict[str, Any] | None = None
                             ) -> dict[str, Any]: ...

    def get_indexed_asset(self, index_id: str, indexed_asset_id: str) -> dict[str, Any]: ...

    def list_indexed_assets(self, index_id: str, *, statuses: tuple[str, ...] = (),
                            max_pages: int = 10) -> list[dict[str, Any]]: ...

    def list_indexed_assets_by_asset(self, asset_id: str, *,
                                     max_pages: int = 10) -> list[dict[str, str]]: ...


class Jobs(Protocol):
    kind: str

    def running(self, index_id: str) -> dict[str, dict[str, Any]]:
        """The index's unfinished jobs by id, in one list request."""

    def get(self, record: FileRecord) -> dict[str, Any]: ...


class Tasks:
    kind = "task"

    def __init__(self, api: TwelveLabsClient) -> None:
        self.api = api

    def running(self, index_id: str) -> dict[str, dict[str, Any]]:
        return {str(task.get("_id")): task for task in self.api.list_tasks(
            index_id=index_id, statuses=RUNNING_TASK_STATUSES)}

    def get(self, record: FileRecord) -> dict[str, Any]:
        return self.api.get_task(record.task_id or "")


class IndexedAssets:
    kind = "indexed asset"

    def __init__(self, assets: AssetCalls) -> None:
        self.assets = assets

    def running(self, index_id: str) -> dict[str, dict[str, Any]]:
        return {str(item.get("_id")): item for item in self.assets.list_indexed_assets(
            index_id, statuses=RUNNING_INDEXED_STATUSES)}

    def get(self, record: FileRecord) -> dict[str, Any]:
        return self.assets.get_indexed_asset(record.index_id, record.indexed_asset_id or "")


def failure_reason(kind: str, job_id: str | None, job: dict[str, Any]) -> str:
    """A sentence for the sidecar: the API's undocumented ``error_reason`` (or ``error``)
    when present; an indexed asset documents no reason field at all."""
    detail = job.get("error_reason") or job.get("message") or job.get("error") \
        or "no reason given"
    if isinstance(detail, dict):
        detail = detail.get("message") or str(detail)
    return f"Twelve Labs marked {kind} {job_id} failed: {detail}"


def percent(job: dict[str, Any]) -> str:
    process = job.get("process")
    if not isinstance(process, dict):
        return ""
    try:
        return f" ({float(process['percentage']):.0f}%)"
    except (TypeError, KeyError, ValueError):
        return ""
