"""One session's chunks on their way: parallel PUTs, fresh URLs, ETags, reports.

Up to ``chunk_concurrency`` PUTs run at a time for a file, each holding one of the
daemon's shared chunk connections (``max_chunk_connections`` across every upload
worker: the uplink is shared). Each chunk is read from its offset in the source as it
is sent (``AssetsApi.put_chunk``), so memory is bounded by the chunks in flight.

Presigned URLs are one-time and expire, so a URL is used at most once: a failed or
refused PUT gets a fresh URL, after a delay from ``backoff``, and a URL close to its
expiry is not used at all. URLs are asked for in windows of at most 50. An ETag is
stored the moment its PUT answers (a crash after that does not send the chunk again);
completed chunks are reported in batches. The API calls go through ``api_call``,
which waits at the shared gate.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, TypeVar, cast

from watcherd.backoff import retry_delay
from watcherd.errors import ApiRejected, TransientError, WatcherdError
from watcherd.threads import beat
from watcherd.twelvelabs.assets import (
    MAX_URL_WINDOW,
    AssetsApi,
    ChunkUrl,
    ChunkUrlRefused,
    CompletedChunk,
    chunk_range,
)
from watcherd.twelvelabs.client import UploadAborted

logger = logging.getLogger(__name__)

T = TypeVar("T")
REPORT_BATCH = 20          # chunks per report once that many have answered
CHUNK_ATTEMPTS = 5         # PUTs of one chunk in a row that may fail before the run gives up
URL_MARGIN_SECONDS = 60.0  # a URL expiring sooner than this is not started on
TURN_SECONDS = 0.5         # the coordinator looks at aborts and progress this often


class SessionGone(WatcherdError):
    """The session no longer takes URLs, chunks or reports (expired, failed, unknown, or
    its chunks refused again and again): a new session must be created."""


class ChunksStopped(WatcherdError):
    """Shutdown: no new chunk was started; those in flight finished and were reported."""


@dataclass(frozen=True)
class SessionPlan:
    """What sending needs to know about one session and its file."""
    upload_id: str
    chunk_size: int
    total_chunks: int
    upload_headers: dict[str, str]
    path: str
    size: int

    def chunk_range(self, index: int) -> tuple[int, int]:
        """(offset, length) of 1-based chunk ``index``."""
        return chunk_range(index, self.chunk_size, self.size)


@dataclass
class Hooks:
    """What a run tells its caller, and asks of it."""
    api_call: Callable[[Callable[[], Any]], Any]     # runs an API call behind the gate
    record_etag: Callable[[int, str], None]          # chunk index, ETag: store it now
    mark_reported: Callable[[list[int], dict[str, Any]], None]  # and the report's answer
    should_stop: Callable[[], bool]                   # finish what is in flight, start nothing
    should_abort: Callable[[], bool]                  # drop everything now
    on_progress: Callable[[int, int], None]           # bytes sent, chunks done


class ChunkRun:
    def __init__(self, plan: SessionPlan, assets: AssetsApi, hooks: Hooks, *,
                 concurrency: int, connections: threading.Semaphore,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time,
                 rng: Callable[[], float] = random.random) -> None:
        self.plan, self.assets, self.hooks = plan, assets, hooks
        self.concurrency, self.connections = concurrency, connections
        self.clock, self.wall, self.rng = clock, wall, rng
        self.cancel = threading.Event()  # in-flight PUTs stop at their next block
        self.pending: deque[int] = deque()
        self.urls: dict[int, ChunkUrl] = {}
        self.retry_at: dict[int, float] = {}
        self.failures: dict[int, int] = {}
        self.in_flight: dict[Future[str], int] = {}
        self.sending: dict[int, int] = {}   # chunk index → bytes of it sent so far (_fill)
        self.unreported: dict[int, str] = {}
        self.done_bytes = self.done_chunks = 0
        self.last_answer: dict[str, Any] | None = None

    def run(self, missing: Iterable[int], to_report: dict[int, str],
            urls: Iterable[ChunkUrl] = ()) -> dict[str, Any] | None:
        """Send ``missing`` chunks and report them with ``to_report`` (known ETags);
        returns the last report's answer (None when nothing was reported)."""
        self.pending = deque(sorted(missing))
        self.unreported = dict(to_report)
        wanted = set(self.pending)
        self.urls = {u.chunk_index: u for u in urls if u.chunk_index in wanted}
        waiting = set(range(1, self.plan.total_chunks + 1)) - wanted
        self.done_chunks = len(waiting)
        self.done_bytes = sum(self.plan.chunk_range(i)[1] for i in waiting)
        stopped = False
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix=_pool_name()) as pool:
            try:
                stopped = self._send_all(pool)
            except BaseException:
                self.cancel.set()
                raise
            finally:
                self._drain()
        self._report()
        if stopped:
            raise ChunksStopped(f"stopped with {len(self.pending)} chunk(s) not sent")
        return self.last_answer

    # -- the coordinator ---------------------------------------------------------------

    def _send_all(self, pool: ThreadPoolExecutor) -> bool:
        """Until every chunk answered; True if a stop cut it short."""
        while self.pending or self.in_flight:
            beat()
            if self.hooks.should_abort():
                raise UploadAborted("upload aborted")
            if self.hooks.should_stop() and self.pending:
                return self._finish_in_flight()
            self._fill(pool)
            if self.in_flight:
                done, _ = wait(list(self.in_flight), timeout=TURN_SECONDS,
                               return_when=FIRST_COMPLETED)
                for future in done:
                    self._settle(future)
            else:  # every chunk left waits out its retry delay
                self.cancel.wait(self._until_next_retry())
            self._progress()
            if len(self.unreported) >= REPORT_BATCH:
                self._report()
        return False

    def _finish_in_flight(self) -> bool:
        while self.in_flight:
            beat()
            if self.hooks.should_abort():
                raise UploadAborted("upload aborted")
            done, _ = wait(list(self.in_flight), timeout=TURN_SECONDS)
            for future in done:
                self._settle(future)
        return True

    def _fill(self, pool: ThreadPoolExecutor) -> None:
        while len(self.in_flight) < self.concurrency:
            index = self._next_due()
            if index is None:
                return
            url = self._url_for(index)
            # The key exists before the PUT's thread writes it: the coordinator sums these
            # while PUTs update them, which is safe only while no key is added meanwhile.
            self.sending[index] = 0
            self.in_flight[pool.submit(self._put, index, url)] = index

    def _next_due(self) -> int | None:
        now = self.clock()
        for index in self.pending:
            if self.retry_at.get(index, 0.0) <= now:
                self.pending.remove(index)
                return index
        return None

    def _until_next_retry(self) -> float:
        due = min((self.retry_at.get(i, 0.0) for i in self.pending), default=0.0)
        return min(TURN_SECONDS, max(0.0, due - self.clock()))

    def _url_for(self, index: int) -> ChunkUrl:
        url = self.urls.pop(index, None)
        if url is None or _expires(url) < self.wall() + URL_MARGIN_SECONDS:
            self._fetch_window(index)
            url = self.urls.pop(index)
        return url

    def _fetch_window(self, start: int) -> None:
        """Fresh URLs from ``start`` up to the last chunk still to send within 50."""
        wanted = [i for i in self.pending if start < i < start + MAX_URL_WINDOW]
        count = max(wanted, default=start) - start + 1
        urls = self._session_call(lambda: self.assets.request_urls(
            self.plan.upload_id, start, count))
        keep = {start, *wanted}
        self.urls.update({u.chunk_index: u for u in urls if u.chunk_index in keep})
        if start not in self.urls:
            raise TransientError(200, None, f"asked for the URL of chunk {start}, got none")

    def _settle(self, future: Future[str]) -> None:
        index = self.in_flight.pop(future)
        self.sending.pop(index, None)
        try:
            etag = future.result()
        except UploadAborted:
            self.pending.appendleft(index)
            return
        except TransientError as exc:  # ChunkUrlRefused too: a fresh URL, after a while
            self._retry_later(index, exc)
            return
        self.failures.pop(index, None)
        self.hooks.record_etag(index, etag)
        self.unreported[index] = etag
        self.done_chunks += 1
        self.done_bytes += self.plan.chunk_range(index)[1]

    def _retry_later(self, index: int, exc: TransientError) -> None:
        failures = self.failures[index] = self.failures.get(index, 0) + 1
        if failures >= CHUNK_ATTEMPTS:
            if isinstance(exc, ChunkUrlRefused):
                raise SessionGone(f"the storage refused chunk {index} {failures} times in a "
                                  f"row, each with a fresh URL (last: {exc.describe()})")
            raise exc
        delay = retry_delay(exc.retry_after, failures, self.rng)
        self.retry_at[index] = self.clock() + delay
        self.pending.appendleft(index)
        logger.info("%s: chunk %d of %d: %s; again with a fresh URL in %.1fs",
                    self.plan.path, index, self.plan.total_chunks, exc.describe(), delay)

    def _drain(self) -> None:
        """In-flight PUTs end (cancelled ones at their next block); keep the ETags that came."""
        for future in list(self.in_flight):
            future.exception()  # waits for it
            try:
                self._settle(future)
            except Exception:
                logger.debug("%s: a chunk ended with the run", self.plan.path, exc_info=True)

    def _progress(self) -> None:
        self.hooks.on_progress(self.done_bytes + sum(self.sending.values()), self.done_chunks)

    # -- API calls ------------------------------------------------------------------------

    def _report(self) -> None:
        while self.unreported:
            batch = sorted(self.unreported.items())[:MAX_URL_WINDOW]
            chunks = [CompletedChunk(i, etag, self.plan.chunk_range(i)[1]) for i, etag in batch]
            self.last_answer = self._session_call(
                partial(self.assets.report_chunks, self.plan.upload_id, chunks))
            for index, _ in batch:
                del self.unreported[index]
            self.hooks.mark_reported([index for index, _ in batch], self.last_answer)

    def _session_call(self, call: Callable[[], T]) -> T:
        """An API call about the session: a refusal means the session is gone."""
        try:
            return cast(T, self.hooks.api_call(call))
        except ApiRejected as exc:
            raise SessionGone(exc.describe()) from exc

    # -- in the pool's threads ------------------------------------------------------------

    def _put(self, index: int, url: ChunkUrl) -> str:
        offset, length = self.plan.chunk_range(index)
        while not self.connections.acquire(timeout=TURN_SECONDS):
            if self.cancel.is_set():
                raise UploadAborted("cancelled before it started")
        try:
            return self.assets.put_chunk(url.url, self.plan.path, offset, length,
                                         self.plan.upload_headers,
                                         on_progress=lambda sent: self._sent(index, sent))
        finally:
            self.connections.release()

    def _sent(self, index: int, sent: int) -> None:
        if self.cancel.is_set():
            raise UploadAborted("cancelled")
        self.sending[index] = sent


def _expires(url: ChunkUrl) -> float:
    """When the URL expires (wall clock); a time the API did not give never expires."""
    try:
        return datetime.fromisoformat(url.expires_at).timestamp()
    except ValueError:
        return float("inf")


def _pool_name() -> str:
    return f"{threading.current_thread().name}-chunk"
