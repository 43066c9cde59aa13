"""A small Twelve Labs client: create a task from a file, get, list, read videos, check an index.

Kept behind this interface because ``/tasks`` is marked legacy upstream; the
assets + indexed-assets flow can replace the body of ``create_task`` later.

The upload streams from disk as a ``body.MultipartBody`` (``requests.post(files=...)``
holds the whole file in memory twice, see dependency-trials.md section 3) through
an adapter reading 1 MiB blocks, each handed to the socket without a copy.
Every request carries explicit connect and I/O timeouts and, on top, a total
deadline of both together (an upload: the I/O timeout without progress), so
an answer trickled byte by byte cannot hold a thread (``deadline``). Redirects
are never followed: the API key goes to ``api.base_url``'s host and nowhere
else, and a 3xx is reported as the configuration problem it is. Failures
become the exception types in ``errors`` so the caller's policy is a matter
of ``except``.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter

from watcherd import __version__
from watcherd.backoff import FLOOR_BASE
from watcherd.errors import (
    ApiError,
    ApiRedirected,
    ApiRejected,
    AuthError,
    QuotaError,
    TransientError,
    WatcherdError,
)
from watcherd.telemetry import NO_TELEMETRY, Telemetry
from watcherd.threads import beat
from watcherd.twelvelabs.body import FileShrank, MultipartBody, RangedFileReader
from watcherd.twelvelabs.deadline import WATCHED_POOLS, Deadline
from watcherd.twelvelabs.ratelimit import RateWindow, endpoint_key
from watcherd.twelvelabs.routes import route_template

logger = logging.getLogger(__name__)

QUOTA_CODES = {"usage_limit_exceeded", "api_allowed_for_paid_plan"}
AUTH_STATUSES = {401, 403}
RETRY_STATUSES = {408, 429}
LIST_PAGE_LIMIT = 50  # the API's maximum
# A longer wait asked by the API is cut to this (and logged): a clock far off
# or a bogus header must not stall ingest for days.
SERVER_DELAY_CAP = 3600.0


class UploadAborted(WatcherdError):
    """The caller asked to stop an upload half way (shutdown, file changed)."""


class BigBlockAdapter(HTTPAdapter):
    """urllib3 2.x reads file-like bodies in 16 KiB pieces; 1 MiB cuts CPU 4-5x."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["blocksize"] = 1 << 20
        super().init_poolmanager(*args, **kwargs)
        # Pools that tell each request's Deadline which connection it uses.
        self.poolmanager.pool_classes_by_scheme = WATCHED_POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if hasattr(manager, "pool_classes_by_scheme"):
            manager.pool_classes_by_scheme = WATCHED_POOLS
        return manager


ProgressCallback = Callable[[int, int], None]


class TwelveLabsClient:
    def __init__(
        self,
        base_url: str,
        key_provider: Callable[[], str],
        *,
        connect_timeout: float = 10.0,
        io_timeout: float = 300.0,
        rate_window: RateWindow | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._key_provider = key_provider
        self.timeout = (connect_timeout, io_timeout)
        # Endpoints whose rate limit is used up; the upload gate reads it too.
        self.rate_window = rate_window or RateWindow()
        self.session = requests.Session()
        for scheme in ("https://", "http://"):
            self.session.mount(scheme, BigBlockAdapter())
        self.session.headers["User-Agent"] = f"watcherd/{__version__}"
        self.telemetry: Telemetry = NO_TELEMETRY  # the daemon's metrics, when they are on

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
            fields: dict[str, str] = {"index_id": index_id}
            if language:
                fields["language"] = language
            if user_metadata:
                fields["user_metadata"] = json.dumps(user_metadata, sort_keys=True)
            reader = RangedFileReader(fh)
            # A stall deadline: each 1 MiB block read for sending starts it again;
            # after the last one, the answer must come within the I/O timeout.
            stall = Deadline(self.timeout[0] + self.timeout[1])
            upload = MultipartBody(fields, "video_file", filename, reader)
            upload.on_read = _progress_hook(len(upload), on_progress, should_abort, stall)
            try:
                response = self._send("POST", "/tasks", data=upload, deadline=stall,
                                      headers={"Content-Type": upload.content_type})
            except FileShrank as exc:
                raise UploadAborted(f"upload aborted: {exc}") from exc
            except TransientError as exc:
                # The body may have reached the server even though no answer came
                # back: the API can create the task anyway (twelvelabs-python #50).
                # A 408 or 429 is a refusal of the request, not a failure inside it.
                exc.maybe_created = upload.bytes_read >= len(upload) and not (
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

    def tasks_endpoint_answers(self, index_id: str) -> bool:
        """Whether ``POST /tasks`` still exists, asked without creating anything: a live
        endpoint refuses a form without a video (400); a removed one answers 404/410."""
        try:
            self._send("POST", "/tasks", files={"index_id": (None, index_id)})
        except ApiRejected as exc:
            return exc.status not in (404, 410)
        return True

    # -- plumbing ------------------------------------------------------------

    def _send(self, method: str, path: str, *, deadline: Deadline | None = None,
              **kwargs: Any) -> requests.Response:
        beat()  # each request is bounded by its deadline; a run of them is progress
        endpoint = endpoint_key(method, path)
        closed_for = self.rate_window.closed_for(endpoint)
        if closed_for > 0:
            raise TransientError(None, "rate_limit_used_up",
                                 f"{method} {path} not sent: the API said no requests are left "
                                 f"until its rate-limit reset in {closed_for:.0f}s",
                                 retry_after=closed_for)
        headers = {"x-api-key": self._key_provider(), **kwargs.pop("headers", {})}
        url = self.base_url + path
        deadline = deadline or Deadline(self.timeout[0] + self.timeout[1])
        status: int | None = None
        with deadline:
            try:
                # Never follow a redirect: requests would re-send x-api-key to any host.
                response = self.session.request(method, url, headers=headers,
                                                timeout=self.timeout, allow_redirects=False,
                                                **kwargs)
                status = response.status_code
            except requests.RequestException as exc:
                raise _transport_error(method, path, exc, deadline) from exc
            finally:  # sent, whatever came of it (an aborted upload too)
                self.telemetry.api_request(method, route_template(path), status)
        self._note_rate_limit(endpoint, response)
        if response.status_code >= 300:
            raise classify_response(response, f"{method} {path}")
        return response

    def _note_rate_limit(self, endpoint: str, response: requests.Response) -> None:
        """``X-Ratelimit-Remaining: 0``: ask again only after the reset."""
        try:
            remaining = int(response.headers.get("X-Ratelimit-Remaining", ""))
        except ValueError:
            return
        if remaining > 0:
            return
        seconds = capped_server_delay(ratelimit_reset_seconds(response) or FLOOR_BASE)
        if self.rate_window.closed_for(endpoint) <= 0:
            logger.info("%s: the API's rate limit is used up; the next request waits %.0fs "
                        "for its reset", endpoint, seconds)
        self.rate_window.close(endpoint, seconds)

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


def _transport_error(method: str, path: str, exc: requests.RequestException,
                     deadline: Deadline) -> TransientError:
    if deadline.expired:
        what = "made no progress" if method == "POST" else "got no complete answer"
        return TransientError(None, "deadline_exceeded",
                              f"{method} {path} {what} within {deadline.seconds:.0f}s; "
                              "gave up on it")
    if isinstance(exc, requests.Timeout):
        return TransientError(None, None, f"{method} {path} timed out: {_safe(exc)}")
    return TransientError(None, None, f"{method} {path} failed: {_safe(exc)}")


def _progress_hook(total: int, on_progress: ProgressCallback | None,
                   should_abort: Callable[[], bool] | None,
                   stall: Deadline) -> Callable[[int], None]:
    def hook(bytes_read: int) -> None:
        stall.extend()
        if should_abort is not None and should_abort():
            raise UploadAborted("upload aborted")
        if on_progress is not None:
            on_progress(bytes_read, total)
    return hook


def classify_response(response: requests.Response, what: str) -> ApiError:
    """Turn a non-2xx answer into the exception type that decides the policy."""
    status = response.status_code
    if 300 <= status < 400:
        return redirected(response, what)
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
        error = body.get("error")
        inner = error if isinstance(error, dict) else body
        code = inner.get("code")
        message = inner.get("message")
        if isinstance(code, str) or isinstance(message, str):
            return (code if isinstance(code, str) else None,
                    message if isinstance(message, str) else _excerpt(response))
    return None, _excerpt(response) or (response.reason or "no body")


def redirected(response: requests.Response, what: str) -> ApiRedirected:
    """A 3xx names where it points; the key was sent to the configured host only."""
    location = response.headers.get("Location")
    target = urlsplit(urljoin(getattr(response, "url", "") or "", location)) if location else None
    host = target.netloc if target is not None and target.netloc else None
    where = f"to host {host}" if host else "with no usable Location"
    return ApiRedirected(response.status_code,
                         f"{what}: api.base_url answered with a redirect {where}; it was not "
                         "followed, so neither the API key nor the file went there", host)


def retry_after_seconds(response: requests.Response, now: float | None = None) -> float | None:
    """Seconds the API asked us to wait, capped at ``SERVER_DELAY_CAP`` (logged when cut).

    ``Retry-After`` (seconds or an HTTP date) first, then ``X-Ratelimit-Reset``.
    Dates and reset times are measured against the answer's own ``Date``
    header when it has one, so a clock off between us and the API does not
    matter; one in the past means 0, which the retry floor turns into a pause.
    """
    delay = _retry_after_header(response, now)
    if delay is None:
        delay = ratelimit_reset_seconds(response, now)
    return None if delay is None else capped_server_delay(delay)


def capped_server_delay(delay: float) -> float:
    if delay > SERVER_DELAY_CAP:
        logger.warning("the API asked to wait %.0fs before the next request; waiting %.0fs "
                       "at most", delay, SERVER_DELAY_CAP)
        return SERVER_DELAY_CAP
    return delay


def _retry_after_header(response: requests.Response, now: float | None) -> float | None:
    value = (response.headers.get("Retry-After") or "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError, AttributeError):
            return None
        return max(0.0, when - _server_now(response, now))
    return max(0.0, seconds) if math.isfinite(seconds) else None


def ratelimit_reset_seconds(response: requests.Response,
                            now: float | None = None) -> float | None:
    """Seconds until ``X-Ratelimit-Reset`` (UTC epoch seconds), by the answer's clock."""
    try:
        reset = float(response.headers.get("X-Ratelimit-Reset") or "")
    except ValueError:
        return None
    if not math.isfinite(reset):
        return None
    return max(0.0, reset - _server_now(response, now))


def _server_now(response: requests.Response, now: float | None) -> float:
    """The API's clock per its ``Date`` header; ours when it sent none."""
    try:
        return email.utils.parsedate_to_datetime(response.headers.get("Date") or "").timestamp()
    except (TypeError, ValueError, AttributeError):
        return time.time() if now is None else now


def _excerpt(response: requests.Response, limit: int = 200) -> str:
    text = response.text if response.content else ""
    text = " ".join(text.split())
    return text[:limit] + ("…" if len(text) > limit else "")


def _safe(exc: Exception) -> str:
    """A one-line description of a transport error (requests repeats itself a lot)."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:300]
