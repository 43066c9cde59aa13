"""The simulated account: its indexes, the tasks uploaded into them, the videos they become.

A task's status is not stored: it is derived on each read from the time since it was
created and the ``progression`` (validating -> pending -> indexing -> ready by default,
in 0.3 s), so a client polling at any pace sees the documented sequence. The JSON follows
``/work/shared/research/twelvelabs-api.md`` sections 1-4 (v1.3, and v1.2's task shape).
"""

from __future__ import annotations

import itertools
import math
import secrets
import threading
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from watcherd.simulator.multipart import ApiError, UploadedFile

MAX_PAGE_LIMIT = 50
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DEFAULT_PROGRESSION = (("validating", 0.0), ("pending", 0.05), ("indexing", 0.1), ("ready", 0.3))
API_VERSIONS = ("v1.3", "v1.2")
# What a new index has had since Marengo 2.7 was retired (research round 2, section 0).
DEFAULT_INDEX_MODELS = ("marengo3.0",)
Progression = Sequence[tuple[str, float]]


def rfc3339(ms: int) -> str:
    return (EPOCH + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds")[:-6] + "Z"


class Catalog:
    """What the account holds, and the JSON the API shows of it.

    ``tasks`` maps task id -> record: ``_id, video_id, index_id, filename, created_at,
    created_ms, started (monotonic), user_metadata, fields, size, sha256``.
    ``clock_offset_seconds``: how far the API's clock is ahead of ours (negative: behind);
    it moves every timestamp the API gives and every ``created_at`` filter it applies.
    ``user_metadata_shown``: where a video's user_metadata can be read back: "list_and_video"
    (the documented behaviour), "video" (not in list items) or "nowhere".
    ``index_models``: index id -> the model names ``GET /indexes/{id}`` lists (each with the
    options ``visual`` and ``audio``); an index not in it has ``DEFAULT_INDEX_MODELS``.
    Change it while running to make an index "switch models" before a reload.
    ``tasks_removed_status``: 404 or 410 makes ``POST /tasks`` answer that (the legacy
    endpoint removed upstream); reading tasks still works.
    """

    def __init__(self, indexes: Iterable[str], api_version: str,
                 progression: Progression,
                 index_models: dict[str, list[str]] | None = None) -> None:
        if api_version not in API_VERSIONS:
            raise ValueError(f"api_version must be v1.2 or v1.3, not {api_version!r}")
        self.indexes = list(indexes)
        self.index_models: dict[str, list[str]] = dict(index_models or {})
        self.api_version = api_version
        self.tasks: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._failing: dict[str, str] = {}
        self._progression: tuple[tuple[str, float], ...] = ()
        self.set_progression(progression)
        self.clock_offset_seconds = 0.0
        self.user_metadata_shown = "list_and_video"
        # 404 or 410: POST /tasks answers it, as the legacy endpoint will once removed.
        self.tasks_removed_status: int | None = None
        self._created_ms = self._now_ms()

    def fail_filenames(self, names: Iterable[str],
                       error_reason: str = "The video could not be indexed.") -> None:
        with self._lock:
            self._failing.update(dict.fromkeys(names, error_reason))

    def stop_failing(self, names: Iterable[str]) -> None:
        with self._lock:
            for name in names:
                self._failing.pop(name, None)

    def set_progression(self, progression: Progression) -> None:
        steps = tuple((str(s), float(t)) for s, t in progression)
        if not steps or any(b[1] < a[1] for a, b in itertools.pairwise(steps)):
            raise ValueError("progression must be non-empty with non-decreasing offsets")
        with self._lock:
            self._progression = steps

    # -- what the handler asks --------------------------------------------------

    def _now_ms(self) -> int:
        """The API's clock, in milliseconds since the epoch."""
        return time.time_ns() // 1_000_000 + int(self.clock_offset_seconds * 1000)

    def _add_task(self, task_id: str, fields: dict[str, str], upload: UploadedFile,
                  metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        """``metadata``: the ``user_metadata`` field as the handler checked it."""
        now_ms = self._now_ms()
        task = {"_id": task_id, "video_id": secrets.token_hex(12),
                "index_id": fields["index_id"], "filename": upload.filename,
                "created_ms": now_ms, "created_at": rfc3339(now_ms),
                "started": time.monotonic(), "user_metadata": metadata,
                "fields": dict(fields), "size": upload.size, "sha256": upload.sha256}
        with self._lock:
            self.tasks[task_id] = task
        return task

    def _state(self, task: dict[str, Any]) -> tuple[str, float, float]:
        """(status, offset of that status, elapsed) from the time since creation."""
        elapsed = time.monotonic() - task["started"]
        steps = self._progression
        index = max([i for i, (_, at) in enumerate(steps) if at <= elapsed], default=0)
        status, at = steps[index]
        if index == len(steps) - 1 and task["filename"] in self._failing:
            status = "failed"
        return status, at, elapsed

    def _task_json(self, task_id: str, task: dict[str, Any] | None = None) -> dict[str, Any]:
        task = task or self.tasks.get(task_id)
        if task is None:
            raise ApiError(404, "resource_not_exist",
                           f"Resource with id `{task_id}` does not exist in `tasks`.")
        status, at, elapsed = self._state(task)
        meta = {"filename": task["filename"], "duration": None, "width": None, "height": None}
        out: dict[str, Any] = {
            "_id": task["_id"], "index_id": task["index_id"], "video_id": task["video_id"],
            "status": status, "created_at": task["created_at"],
            "updated_at": rfc3339(task["created_ms"] + int(at * 1000)),
        }
        if self.api_version == "v1.3":
            out["system_metadata"] = meta
        else:
            end = self._progression[-1][1]
            done = status in ("ready", "failed")
            out["metadata"] = meta
            out["process"] = {
                "percentage": 100 if done else int(min(99.0, 100 * elapsed / end)) if end else 0,
                "remain_seconds": 0 if done else round(max(0.0, end - elapsed), 1)}
            if status != "ready":
                del out["video_id"]  # v1.2 sends video_id only once indexed
        out["hls"] = None
        if status == "failed":
            out["error_reason"] = self._failing[task["filename"]]
        return out

    def _list(self, query: dict[str, list[str]]) -> dict[str, Any]:
        listing = Listing(query)
        statuses = {s for v in query.get("status", []) for s in v.split(",") if s}
        with self._lock:
            tasks = list(self.tasks.values())  # dicts keep creation order: a stable tie-break
        items = []
        for task in tasks:
            item = self._task_json(task["_id"], task)
            if (listing.one("index_id", item["index_id"]) == item["index_id"]
                    and listing.matches(task)
                    and (not statuses or item["status"] in statuses)):
                items.append(item)
        return listing.page(items)

    def _videos(self, index_id: str, query: dict[str, list[str]]) -> dict[str, Any]:
        """``GET /indexes/{id}/videos``: the videos indexed so far, paged and filtered like
        the tasks list; each item carries the user_metadata sent at upload."""
        self._index_json(index_id)  # 404 for an unknown index
        listing = Listing(query)
        with self._lock:
            tasks = [t for t in self.tasks.values() if t["index_id"] == index_id]
        videos = [self._video_json(t, in_list=True) for t in tasks
                  if listing.matches(t) and self._state(t)[0] == "ready"]
        return listing.page(videos)

    def _video(self, index_id: str, video_id: str) -> dict[str, Any]:
        """``GET /indexes/{id}/videos/{video_id}``: a video exists once it is indexed."""
        self._index_json(index_id)
        with self._lock:
            found = [t for t in self.tasks.values()
                     if t["index_id"] == index_id and t["video_id"] == video_id]
        if not found or self._state(found[0])[0] != "ready":
            raise ApiError(404, "resource_not_exist",
                           f"Resource with id `{video_id}` does not exist in `videos`.")
        return self._video_json(found[0], in_list=False)

    def _video_json(self, task: dict[str, Any], *, in_list: bool) -> dict[str, Any]:
        _, at, _ = self._state(task)
        indexed = rfc3339(task["created_ms"] + int(at * 1000))
        video: dict[str, Any] = {
            "_id": task["video_id"], "created_at": task["created_at"], "updated_at": indexed,
            "indexed_at": indexed,
            "system_metadata": {"filename": task["filename"], "size": task["size"],
                                "duration": None, "fps": None, "width": None, "height": None}}
        shown = self.user_metadata_shown
        if shown == "list_and_video" or (shown == "video" and not in_list):
            video["user_metadata"] = task["user_metadata"]
        return video

    def _index_json(self, index_id: str) -> dict[str, Any]:
        if index_id not in self.indexes:
            raise ApiError(404, "resource_not_exist",
                           f"Resource with id `{index_id}` does not exist in `indexes`.")
        created = rfc3339(self._created_ms)
        return {"_id": index_id, "index_name": index_id, "created_at": created,
                "updated_at": created,
                "models": [{"model_name": name, "model_options": ["visual", "audio"]}
                           for name in self.index_models.get(index_id, DEFAULT_INDEX_MODELS)]}


class Listing:
    """The paging, sorting and filtering query parameters both lists share."""

    def __init__(self, query: dict[str, list[str]]) -> None:
        self.query = query
        try:
            self.page_no = int(self.one("page", "1"))
            self.limit = int(self.one("page_limit", "10"))
        except ValueError:
            raise _invalid("page") from None
        if self.page_no < 1:
            raise _invalid("page")
        if not 1 <= self.limit <= MAX_PAGE_LIMIT:
            raise _invalid("page_limit")
        self.order = self.one("sort_option", "desc")
        self.sort_by = self.one("sort_by", "created_at")
        if self.order not in ("asc", "desc"):
            raise _invalid("sort_option")
        if self.sort_by not in ("created_at", "updated_at"):
            raise _invalid("sort_by")
        self.since_us = None
        if "created_at" in query:
            try:
                since = datetime.fromisoformat(self.one("created_at", ""))
            except ValueError:
                raise _invalid("created_at") from None
            since = since if since.tzinfo else since.replace(tzinfo=UTC)
            self.since_us = (since - EPOCH) // timedelta(microseconds=1)

    def one(self, name: str, default: str) -> str:
        return (self.query.get(name) or [default])[-1]

    def matches(self, task: dict[str, Any]) -> bool:
        """The filename and created_at (at or after) filters."""
        return (self.one("filename", task["filename"]) == task["filename"]
                and (self.since_us is None or task["created_ms"] * 1000 >= self.since_us))

    def page(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        # Sorting is stable: items of one millisecond keep their creation order (newest
        # first when descending).
        desc = self.order == "desc"
        ordered = sorted(items[::-1] if desc else items, key=lambda item: item[self.sort_by],
                         reverse=desc)
        start = (self.page_no - 1) * self.limit
        return {"data": ordered[start: start + self.limit],
                "page_info": {"limit_per_page": self.limit, "page": self.page_no,
                              "total_page": math.ceil(len(ordered) / self.limit),
                              "total_results": len(ordered)}}


def _invalid(name: str) -> ApiError:
    return ApiError(400, "parameter_invalid", f"The `{name}` parameter is invalid.")
