"""A small Twelve Labs client: create a task from a file, get, list, read videos, check an index.

Kept behind this interface because ``/tasks`` is marked legacy upstream; the
assets + indexed-assets flow can replace the body of ``create_task`` later.

The upload streams from disk with requests-toolbelt's ``MultipartEncoder``
(``requests.post(files=...)`` holds the whole file in memory twice, see
dependency-trials.md section 3) through an adapter reading 1 MiB blocks.
Every request carries explicit connect and I/O timeouts. Failures become the
exception types in ``errors`` so the caller's policy is a matter of ``except``.
"""

from __future__ import annotations

import email.utils
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from requests_toolbelt import MultipartEncoder, MultipartEncoderMonitor

from . import __version__
from .errors import (
    ApiError,
    ApiRejected,
    AuthError,
    QuotaError,
    TransientError,
    WatcherdError,
)
from .threads import beat

logger = logging.getLogger(__name__)

QUOTA_CODES = {"usage_limit_exceeded", "api_allowed_for_paid_plan"}
AUTH_STATUSES = {401, 403}
RETRY_STATUSES = {408, 429}
LIST_PAGE_LIMIT = 50  # the API's maximum


class UploadAborted(WatcherdError):
    """The caller asked to stop an upload half way (shutdown, file changed)."""


class BigBlockAdapter(HTTPAdapter):
    """urllib3 2.x reads file-like bodies in 16 KiB pieces; 1 MiB cuts CPU 4-5x."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["blocksize"] = 1 << 20
        super().init_poolmanager(*args, **kwargs)


ProgressCallback = Callable[[int, int], None]


class TwelveLabsClient:
    def __init__(
        self,
        base_url: str,
        key_provider: Callable[[], str],
        *,
        connect_timeout: float = 10.0,
        io_timeout: float = 300.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._key_provider = key_provider
        self.timeout = (connect_timeout, io_timeout)
        self.session = requests.Session()
        for scheme in ("https://", "http://"):
            self.session.mount(scheme, BigBlockAdapter())
        self.session.headers["User-Agent"] = f"watcherd/{__version__}"

    def close(self) -> None:
        self.session.close()

    @contextmanager
    def short_timeouts(self, connect: float, io: float) -> Iterator[TwelveLabsClient]:
        """Cap the timeouts for quick checks (only while no other thread uses the client)."""
        saved = self.timeout
        self.timeout = (min(connect, saved[0]), min(io, saved[1]))
        try:
            yield self
        finally:
            self.timeout = saved

    # -- the four operations -------------------------------------------------

    def create_task(
        self,
        path: str | os.PathLike,
        *,
        index_id: str,
        filename: str | None = None,
        language: str | None = None,
        user_metadata: dict[str, Any] | None = None,
        on_progress: ProgressCallback | None = None,
        should_abort: Callable[[], bool] | None = None,
    ) -> dict[str, Any]:
        """POST /tasks with the file streamed from disk; returns ``{_id, video_id}``."""
        filename = filename or Path(path).name
        with open(path, "rb") as fh:
            fields: dict[str, Any] = {"index_id": index_id}
            if language:
                fields["language"] = language
            if user_metadata:
                fields["user_metadata"] = json.dumps(user_metadata, sort_keys=True)
            fields["video_file"] = (filename, fh, "application/octet-stream")
            encoder = MultipartEncoder(fields=fields)
            monitor = MultipartEncoderMonitor(
                encoder, _progress_hook(encoder.len, on_progress, should_abort)
            )
            try:
                response = self._send("POST", "/tasks", data=monitor,
                                      headers={"Content-Type": monitor.content_type})
            except TransientError as exc:
                # The body may have reached the server even though no answer came
                # back: the API can create the task anyway (twelvelabs-python #50).
                # A 408 or 429 is a refusal of the request, not a failure inside it.
                exc.maybe_created = monitor.bytes_read >= encoder.len and not (
                    exc.status is not None and exc.status < 500)
                raise
        body = self._json(response)
        if not body.get("_id"):
            raise TransientError(response.status_code, None,
                                 f"create answered without a task id: {_excerpt(response)}",
                                 maybe_created=True)
        return body

    def get_task(self, task_id: str) -> dict[str, Any]:
        return self._json(self._send("GET", f"/tasks/{task_id}"))

    def list_tasks(
        self,
        *,
        index_id: str,
        filename: str | None = None,
        created_at: str | None = None,
        statuses: tuple[str, ...] = (),
        max_pages: int = 10,
    ) -> list[dict[str, Any]]:
        """GET /tasks with filters, following pages up to ``max_pages``."""
        params: dict[str, Any] = {"index_id": index_id, "page_limit": LIST_PAGE_LIMIT,
                                  "sort_option": "desc"}
        if filename:
            params["filename"] = filename
        if created_at:
            params["created_at"] = created_at
        if statuses:
            params["status"] = list(statuses)
        tasks: list[dict[str, Any]] = []
        for page in range(1, max_pages + 1):
            body = self._json(self._send("GET", "/tasks", params={**params, "page": page}))
            tasks.extend(body.get("data") or [])
            total_pages = (body.get("page_info") or {}).get("total_page") or 1
            if page >= total_pages or not body.get("data"):
                break
        return tasks

    def list_videos(self, *, index_id: str, filename: str, created_at: str | None = None,
                    max_pages: int = 10) -> list[dict[str, Any]]:
        """``GET /indexes/{id}/videos`` by filename: indexed videos, with their user_metadata."""
        params: dict[str, Any] = {"filename": filename, "page_limit": LIST_PAGE_LIMIT,
                                  "sort_option": "desc"}
        if created_at:
            params["created_at"] = created_at
        videos: list[dict[str, Any]] = []
        for page in range(1, max_pages + 1):
            body = self._json(self._send("GET", f"/indexes/{index_id}/videos",
                                         params={**params, "page": page}))
            videos.extend(body.get("data") or [])
            total_pages = (body.get("page_info") or {}).get("total_page") or 1
            if page >= total_pages or not body.get("data"):
                break
        return videos

    def get_video(self, index_id: str, video_id: str) -> dict[str, Any]:
        """``GET /indexes/{id}/videos/{video_id}``: exists once the video is indexed."""
        return self._json(self._send("GET", f"/indexes/{index_id}/videos/{video_id}"))

    def get_index(self, index_id: str) -> dict[str, Any]:
        return self._json(self._send("GET", f"/indexes/{index_id}"))

    # -- plumbing ------------------------------------------------------------

    def _send(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        beat()  # each request is bounded by the timeouts; a run of them is progress
        headers = {"x-api-key": self._key_provider(), **kwargs.pop("headers", {})}
        url = self.base_url + path
        try:
            response = self.session.request(method, url, headers=headers,
                                            timeout=self.timeout, **kwargs)
        except requests.Timeout as exc:
            raise TransientError(None, None, f"{method} {path} timed out: {_safe(exc)}") from exc
        except requests.RequestException as exc:
            raise TransientError(None, None, f"{method} {path} failed: {_safe(exc)}") from exc
        if response.status_code >= 300:
            raise classify_response(response, f"{method} {path}")
        return response

    @staticmethod
    def _json(response: requests.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise TransientError(response.status_code, None,
                                 f"expected a JSON object, got: {_excerpt(response)}")
        return body


def _progress_hook(total: int, on_progress: ProgressCallback | None,
                   should_abort: Callable[[], bool] | None) -> Callable[[Any], None]:
    def hook(monitor: MultipartEncoderMonitor) -> None:
        if should_abort is not None and should_abort():
            raise UploadAborted("upload aborted")
        if on_progress is not None:
            on_progress(monitor.bytes_read, total)
    return hook


def classify_response(response: requests.Response, what: str) -> ApiError:
    """Turn a non-2xx answer into the exception type that decides the policy."""
    status = response.status_code
    code, message = parse_error_body(response)
    message = f"{what}: {message}"
    if status in AUTH_STATUSES:
        return AuthError(status, code, message)
    if code in QUOTA_CODES:
        return QuotaError(status, code, message)
    if status in RETRY_STATUSES or status >= 500:
        return TransientError(status, code, message, retry_after=retry_after_seconds(response))
    return ApiRejected(status, code, message)


def parse_error_body(response: requests.Response) -> tuple[str | None, str]:
    """``(code, message)`` from either error shape; never raises on odd bodies."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        inner = body.get("error") if isinstance(body.get("error"), dict) else body
        code = inner.get("code")
        message = inner.get("message")
        if isinstance(code, str) or isinstance(message, str):
            return (code if isinstance(code, str) else None,
                    message if isinstance(message, str) else _excerpt(response))
    return None, _excerpt(response) or (response.reason or "no body")


def retry_after_seconds(response: requests.Response, now: float | None = None) -> float | None:
    """Seconds to wait per ``Retry-After`` (seconds or HTTP date) or ``X-Ratelimit-Reset``."""
    now = time.time() if now is None else now
    value = response.headers.get("Retry-After")
    if value:
        value = value.strip()
        if value.isdigit():
            return float(value)
        try:
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - now)
        except (TypeError, ValueError):
            pass
    reset = response.headers.get("X-Ratelimit-Reset")
    if reset:
        try:
            return max(0.0, float(reset) - now)
        except ValueError:
            pass
    return None


def _excerpt(response: requests.Response, limit: int = 200) -> str:
    text = response.text if response.content else ""
    text = " ".join(text.split())
    return text[:limit] + ("…" if len(text) > limit else "")


def _safe(exc: Exception) -> str:
    """A one-line description of a transport error (requests repeats itself a lot)."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:300]
