"""A fake Twelve Labs API: a real threaded HTTP server on loopback for tests and benchmarks.

It speaks the documented JSON (see /work/shared/research/twelvelabs-api.md sections 1-4),
parses real multipart bodies as a stream (a 1.5 GB upload uses constant memory) and can
inject the failures a real client must survive: 429 with an empty body, non-JSON 5xx,
connection resets before, during and after the task was created, slow answers, answers
trickled byte by byte, a front that redirects elsewhere, a rate limiter with
``X-Ratelimit-*`` headers, and seeded random faults (see the knobs after ``inject``).

Standalone: ``python -m tests.fakeapi [--port 0] [--api-key K] [--index idx_test]`` prints
``base_url`` and serves until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import secrets
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import pairwise
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.multipart import ApiError, Body, Dropped, UploadedFile, parse_header, read_form

MIDBODY_MIN = 64 << 10      # "reset_midbody" reads at least this much before dropping
MAX_PAGE_LIMIT = 50
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ACTIONS = (None, "reset", "reset_midbody", "create_then_reset", "late", "early", "trickle",
           "slow_read", "pass")
DEFAULT_PROGRESSION = (("validating", 0.0), ("pending", 0.05), ("indexing", 0.1), ("ready", 0.3))
# What a new index has had since Marengo 2.7 was retired (research round 2, section 0).
DEFAULT_INDEX_MODELS = ("marengo3.0",)
Progression = Sequence[tuple[str, float]]


@dataclass
class RecordedRequest:
    method: str
    path: str                       # full path as sent, e.g. "/v1.3/tasks/abc" (no query)
    query: dict[str, list[str]]
    headers: dict[str, str]         # lower-cased names
    fields: dict[str, str] = field(default_factory=dict)
    file: UploadedFile | None = None
    status: int = 0                 # what was answered; 0 if the connection was dropped
    task_id: str | None = None
    at: float = field(default_factory=time.time)  # when the request arrived


@dataclass
class _Rule:
    method: str
    prefix: str
    status: int
    body: bytes | str | dict | None
    headers: dict[str, str]
    remaining: int
    action: str | None
    delay: float
    after_bytes: int = 0            # "reset_midbody": drop after exactly this much, if set


def _strict_json_text(text: str | None) -> bool:
    """JSON a strict parser takes: a lone surrogate escape (\\udcff) is not text."""
    if text is None:
        return True
    try:
        json.dumps(json.loads(text), ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    except ValueError:
        pass  # not JSON at all: not what this check is about
    return True


def _rfc3339(ms: int) -> str:
    return (EPOCH + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds")[:-6] + "Z"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], fake: FakeTwelveLabs) -> None:
        self.fake = fake
        self.lock = threading.Lock()
        self.conns: dict[threading.Thread, socket.socket] = {}  # so stop() can end them
        self.hard_close: set[socket.socket] = set()              # connections to RST
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn); skip it.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(target=self._serve, args=(request, client_address),
                                  name="fakeapi-conn", daemon=True)
        with self.lock:
            self.conns[thread] = request
        thread.start()

    def _serve(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self.lock:
                self.conns.pop(threading.current_thread(), None)

    def shutdown_request(self, request: Any) -> None:
        with self.lock:
            hard = request in self.hard_close
            self.hard_close.discard(request)
        if hard:
            self.close_request(request)  # SO_LINGER 0 is set, so close() sends a RST
        else:
            super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            self.fake.errors.append(traceback.format_exc())

    def close_connections(self, timeout: float) -> None:
        """End keep-alive connections so no handler thread outlives stop()."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                conns = list(self.conns.items())
            if not conns:
                return
            for _, sock in conns:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            for thread, _ in conns:
                thread.join(max(0.0, deadline - time.monotonic()))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else small answers wait 40 ms for a delayed ACK
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # tests read FakeTwelveLabs.requests instead

    def do_GET(self) -> None:
        fake = self.server.fake
        url = urlsplit(self.path)
        rec = RecordedRequest(self.command, url.path, parse_qs(url.query, keep_blank_values=True),
                              {k.lower(): v for k, v in self.headers.items()})
        self._recorded = False
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        try:
            length = None if chunked else int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
            self.close_connection = True
        body = Body(self.rfile, length, chunked)
        rel = fake._relative(url.path)
        try:
            rule = fake._take_rule(self.command, rel)
            if rule is None:
                self._respond(rec, body, *self._route(rec, body, rel))
            elif rule.action in ("trickle", "slow_read", "pass"):
                self._respond_specially(rec, body, rel, rule)
            elif rule.action == "reset_midbody":
                half = max(body.length // 2, MIDBODY_MIN) if body.length else MIDBODY_MIN
                half = rule.after_bytes or half
                for _ in body.pieces(limit=min(half, body.length or half)):
                    pass
                self._drop(rec)
            elif rule.action == "early":
                # Answer before reading the body, then close: the client sees the answer
                # or a reset, and no task exists either way.
                self.close_connection = True
                self._respond(rec, None, rule.status, rule.body, rule.headers)
            elif rule.action == "late":
                fake._stopping.wait(rule.delay)
                self._respond(rec, body, *self._route(rec, body, rel))
            elif rule.action == "create_then_reset":
                self._route(rec, body, rel)  # creates the task as usual
                body.drain()
                fake._stopping.wait(rule.delay)
                self._drop(rec)
            else:
                body.drain()  # the client must finish sending to see our answer
                fake._stopping.wait(rule.delay)
                if rule.action == "reset":
                    self._drop(rec)
                else:
                    self._respond(rec, body, rule.status, rule.body, rule.headers)
        except (Dropped, ConnectionError, TimeoutError):
            self.close_connection = True
            if not self._recorded:
                rec.status = 0
                fake._record(rec)
        except Exception:  # noqa: BLE001 (a bug in the fake: a 500, and fake.errors has it)
            fake.errors.append(traceback.format_exc())
            self.close_connection = True
            if not self._recorded:
                self._respond(rec, body, 500, {"code": "fake_bug", "message": "see fake.errors"})

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _route(self, rec: RecordedRequest, body: Body, rel: str | None) -> tuple[int, Any]:
        fake = self.server.fake
        if rec.headers.get("x-api-key") != fake.api_key:
            return 401, {"code": "api_key_invalid", "message": "API Key is either invalid or "
                         "expired. Please check your API key and try again."}
        parts = (rel or "").strip("/").split("/")
        try:
            if rel is None:
                pass
            elif self.command == "POST" and parts == ["tasks"]:
                return 200, self._create(rec, body)
            elif self.command == "GET" and parts == ["tasks"]:
                return 200, fake._list(rec.query)
            elif self.command == "GET" and len(parts) == 2 and parts[0] == "tasks":
                return 200, fake._task_json(parts[1])
            elif self.command == "GET" and len(parts) == 2 and parts[0] == "indexes":
                return 200, fake._index_json(parts[1])
            elif self.command == "GET" and len(parts) == 3 and parts[::2] == ["indexes",
                                                                               "videos"]:
                return 200, fake._videos(parts[1], rec.query)
            elif self.command == "GET" and len(parts) == 4 and parts[::2] == ["indexes",
                                                                               "videos"]:
                return 200, fake._video(parts[1], parts[3])
        except ApiError as exc:
            return exc.status, {"code": exc.code, "message": exc.message}
        return 404, {"code": "not_found", "message": f"{self.command} {rec.path} not found."}

    def _create(self, rec: RecordedRequest, body: Body) -> dict[str, str]:
        fake = self.server.fake
        mime, params = parse_header(self.headers.get("Content-Type", ""))
        if mime != "multipart/form-data" or not params.get("boundary"):
            raise ApiError(400, "parameter_invalid", "The request must be multipart/form-data.")
        task_id = secrets.token_hex(12)
        part_path = fake.store_dir / f"{task_id}.bin.part" if fake.store_dir else None
        try:
            with open(part_path, "wb") if part_path else nullcontext() as sink:
                rec.fields, rec.file = read_form(body, params["boundary"].encode("latin-1"), sink)
            missing = [n for n in ("index_id", "video_file")
                       if not (rec.file if n == "video_file" else rec.fields.get(n))]
            if missing:
                raise ApiError(400, "parameter_not_provided",
                                f"The `{missing[0]}` parameter is required but was not provided.")
            if not _strict_json_text(rec.fields.get("user_metadata")):
                raise ApiError(400, "parameter_invalid",
                               "The `user_metadata` parameter is invalid.")
            index_id = rec.fields["index_id"]
            if index_id not in fake.indexes:
                raise ApiError(400, "resource_not_exist",
                                f"Resource with id `{index_id}` does not exist in `indexes`.")
            assert rec.file is not None
            if rec.file.size == 0:
                raise ApiError(400, "video_file_broken", "Cannot read video file. Please check "
                                "the video file is valid and try again.")
            if part_path:
                part_path.rename(part_path.with_suffix(""))
                part_path = None
        finally:
            if part_path:
                part_path.unlink(missing_ok=True)
        task = fake._add_task(task_id, rec.fields, rec.file)
        rec.task_id = task_id
        return {"_id": task_id, "video_id": task["video_id"]}

    def _respond(self, rec: RecordedRequest, body: Body | None, status: int, payload: Any,
                 headers: dict[str, str] | None = None) -> None:
        if body is not None:
            body.drain()  # answer only after the whole request was read (no broken pipes)
        out: dict[str, str] = {"X-Api-Version": self.server.fake.api_version}
        if isinstance(payload, (dict, list)):
            data = json.dumps(payload).encode()
            out["Content-Type"] = "application/json; charset=utf-8"
        else:
            data = payload.encode() if isinstance(payload, str) else payload or b""
            if data:
                out["Content-Type"] = "text/plain; charset=utf-8"
        for key, val in (headers or {}).items():  # caller's headers win, case-insensitively
            out = {k: v for k, v in out.items() if k.lower() != key.lower()}
            out[key] = val
        rec.status = status
        self.server.fake._record(rec)  # before answering, so a client never outruns the record
        self._recorded = True
        self.send_response(status)
        for key, val in out.items():
            self.send_header(key, val)
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def _respond_specially(self, rec: RecordedRequest, body: Body, rel: str | None,
                           rule: _Rule) -> None:
        """The normal answer, but trickled, read slowly, or with the rule's extra headers."""
        stopping = self.server.fake._stopping
        if rule.action == "slow_read":
            body.rfile = _SlowReader(body.rfile, rule.delay, stopping)  # type: ignore[assignment]
        saved = self.wfile
        if rule.action == "trickle":
            self.wfile = _Trickle(saved, rule.delay, stopping)  # type: ignore[assignment]
        try:
            status, payload = self._route(rec, body, rel)
            self._respond(rec, body, status, payload, rule.headers)
        finally:
            self.wfile = saved

    def _drop(self, rec: RecordedRequest) -> None:
        rec.status = 0
        self.server.fake._record(rec)
        self._recorded = True
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        with self.server.lock:
            self.server.hard_close.add(self.connection)


class FakeTwelveLabs:
    """The fake API. Use as a context manager; ``base_url`` is valid once started.

    ``requests`` lists every request in the order its answer went out (it is appended just
    before answering, so a client never sees an answer the record does not have yet).
    ``tasks`` maps task id -> record: ``_id, video_id, index_id, filename, created_at,
    created_ms, started (monotonic), user_metadata, fields, size, sha256``; the status is
    derived on each read. ``errors`` holds tracebacks of bugs in the fake itself.

    ``clock_offset_seconds``: how far the API's clock is ahead of ours (negative: behind);
    it moves every timestamp the API gives and every ``created_at`` filter it applies.
    ``user_metadata_shown``: where a video's user_metadata can be read back: "list_and_video"
    (the documented behaviour), "video" (not in list items) or "nowhere".
    ``index_models``: index id -> the model names ``GET /indexes/{id}`` lists (each with the
    options ``visual`` and ``audio``); an index not in it has ``DEFAULT_INDEX_MODELS``.
    Change it while running to make an index "switch models" before a reload.
    """

    def __init__(self, *, api_key: str = "tlk_test_key", indexes: Iterable[str] = ("idx_test",),
                 api_version: str = "v1.3", progression: Progression = DEFAULT_PROGRESSION,
                 index_models: dict[str, list[str]] | None = None,
                 store_dir: str | os.PathLike | None = None,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        if api_version not in ("v1.2", "v1.3"):
            raise ValueError(f"api_version must be v1.2 or v1.3, not {api_version!r}")
        self.api_key = api_key
        self.indexes = list(indexes)
        self.index_models: dict[str, list[str]] = dict(index_models or {})
        self.api_version = api_version
        self.store_dir = Path(store_dir) if store_dir is not None else None
        self.host, self.port = host, port
        self.requests: list[RecordedRequest] = []
        self.tasks: dict[str, dict] = {}
        self.errors: list[str] = []  # tracebacks of bugs in the fake itself
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []
        self._failing: dict[str, str] = {}
        self._progression: tuple[tuple[str, float], ...] = ()
        self.set_progression(progression)
        self.clock_offset_seconds = 0.0
        self.user_metadata_shown = "list_and_video"
        self._created_ms = self._now_ms()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._redirect: tuple[str, int] | None = None
        self._limiters: list[_Limiter] = []
        self._chances: list[_Chance] = []

    # -- lifecycle ----------------------------------------------------------

    def start(self) -> FakeTwelveLabs:
        if self._server is not None:
            raise RuntimeError("already started")
        if self.store_dir is not None:
            self.store_dir.mkdir(parents=True, exist_ok=True)
        self._stopping.clear()
        self._server = _Server((self.host, self.port), self)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        name="fakeapi-serve", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()  # wakes injected delays
        server.shutdown()
        assert self._thread is not None
        self._thread.join()
        server.close_connections(timeout=5.0)
        server.server_close()

    def __enter__(self) -> FakeTwelveLabs:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the fake API is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/{self.api_version}"

    # -- test controls ------------------------------------------------------

    def inject(self, method: str, path_prefix: str, *, status: int = 500,
               body: bytes | str | dict | None = None, headers: dict[str, str] | None = None,
               times: int = 1, action: str | None = None, delay: float = 0.0) -> None:
        """The next ``times`` requests matching ``method`` and ``path_prefix`` (relative to
        ``/<api_version>``) get this instead of the normal answer.

        ``action``: None answers ``status``/``body``/``headers`` (dict body -> JSON, None ->
        empty); "reset" reads the body then sends a RST; "reset_midbody" drops after about
        half the body; "create_then_reset" handles the request normally (POST /tasks creates
        the task) and then drops the answer; "late" answers normally after ``delay``;
        "early" answers ``status`` without reading the body and closes the connection.
        ``delay`` sleeps before answering or dropping; "trickle" sends the normal answer one
        byte every ``delay`` seconds; "slow_read" reads the body at 1 MiB per ``delay``
        seconds, then answers normally.
        Rules are tried in the order they were added; the first with uses left wins.
        Injection happens before the key check, like a proxy or rate limiter would.
        """
        if action not in ACTIONS:
            raise ValueError(f"action must be one of {ACTIONS}, not {action!r}")
        with self._lock:
            self._rules.append(_Rule(method.upper(), path_prefix, status, body,
                                     dict(headers or {}), times, action, delay))

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
        if not steps or any(b[1] < a[1] for a, b in pairwise(steps)):
            raise ValueError("progression must be non-empty with non-decreasing offsets")
        with self._lock:
            self._progression = steps

    def uploads(self) -> list[RecordedRequest]:
        """Successful ``POST /tasks`` that created a task (and got the answer)."""
        with self._lock:
            recorded = list(self.requests)
        return [r for r in recorded if r.method == "POST" and r.status == 200 and r.task_id]

    def count(self, method: str, path_prefix: str) -> int:
        with self._lock:
            recorded = list(self.requests)
        return sum(1 for r in recorded if r.method == method.upper()
                   and (rel := self._relative(r.path)) is not None and rel.startswith(path_prefix))

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    # -- transport knobs: a redirecting front, a rate limiter, seeded random faults

    def redirect_to(self, target: str | None, status: int = 302) -> None:
        """Act as a front that answers every request with ``status`` pointing at ``target``
        plus the request's path under the API version; None turns the front off."""
        with self._lock:
            self._redirect = None if target is None else (target.rstrip("/"), status)

    def rate_limit(self, method: str, path_prefix: str, *, limit: int,
                   window: float) -> _Limiter:
        """Allow ``limit`` requests per ``window`` seconds; every answer carries
        ``X-Ratelimit-Limit/-Remaining/-Reset`` and a request made while nothing remains
        gets a bare 429. ``limiter.refused`` counts those: a client that waits for the
        reset has none."""
        limiter = _Limiter(method.upper(), path_prefix, limit, window)
        with self._lock:
            self._limiters.append(limiter)
        return limiter

    def inject_randomly(self, method: str, path_prefix: str, probability: float, *,
                        seed: int, status: int = 500, body: bytes | str | dict | None = None,
                        headers: dict[str, str] | None = None, action: str | None = None,
                        after_bytes: int = 0) -> _Chance:
        """Each matching request (when no ``inject`` rule or limiter took it) gets this
        fault with ``probability``, drawn from its own ``random.Random(seed)``: the n-th
        matching request is hit or not the same way on every run, whatever the timing.
        ``after_bytes`` with action "reset_midbody" drops after exactly that much body."""
        if action not in ACTIONS:
            raise ValueError(f"action must be one of {ACTIONS}, not {action!r}")
        chance = _Chance(_Rule(method.upper(), path_prefix, status, body, dict(headers or {}),
                               1, action, 0.0, after_bytes), probability, random.Random(seed))
        with self._lock:
            self._chances.append(chance)
        return chance

    def clear_faults(self) -> None:
        """Forget every pending ``inject`` rule, random fault, rate limiter and redirect."""
        with self._lock:
            for rule in self._rules:
                rule.remaining = 0
            self._chances, self._limiters, self._redirect = [], [], None

    def _redirect_rule(self, rel: str) -> _Rule:
        assert self._redirect is not None
        target, status = self._redirect
        return _Rule("*", "", status, {"code": "moved", "message": "elsewhere"},
                     {"Location": target + rel}, 1, None, 0.0)

    # -- internals used by the handler --------------------------------------

    def _relative(self, path: str) -> str | None:
        """The path under ``/<api_version>``, or None for anything outside it."""
        prefix = "/" + self.api_version
        if path == prefix or path.startswith(prefix + "/"):
            return path[len(prefix):] or "/"
        return None

    def _take_rule(self, method: str, rel: str | None) -> _Rule | None:
        if rel is None:
            return None
        with self._lock:
            if self._redirect is not None:
                return self._redirect_rule(rel)
            for rule in self._rules:
                if rule.remaining > 0 and rule.method in (method, "*") \
                        and rel.startswith(rule.prefix):
                    rule.remaining -= 1
                    return rule
            for limiter in self._limiters:
                if limiter.method == method and rel.startswith(limiter.prefix):
                    return limiter.take()
            for chance in self._chances:
                if chance.rule.method in (method, "*") and rel.startswith(chance.rule.prefix) \
                        and chance.rng.random() < chance.probability:
                    chance.hits += 1
                    return chance.rule
        return None

    def _now_ms(self) -> int:
        """The API's clock, in milliseconds since the epoch."""
        return time.time_ns() // 1_000_000 + int(self.clock_offset_seconds * 1000)

    def _record(self, rec: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(rec)

    def _add_task(self, task_id: str, fields: dict[str, str], upload: UploadedFile) -> dict:
        try:
            metadata: Any = json.loads(fields["user_metadata"])
        except (KeyError, ValueError):
            metadata = fields.get("user_metadata")
        now_ms = self._now_ms()
        task = {"_id": task_id, "video_id": secrets.token_hex(12),
                "index_id": fields["index_id"], "filename": upload.filename,
                "created_ms": now_ms, "created_at": _rfc3339(now_ms),
                "started": time.monotonic(), "user_metadata": metadata,
                "fields": dict(fields), "size": upload.size, "sha256": upload.sha256}
        with self._lock:
            self.tasks[task_id] = task
        return task

    def _state(self, task: dict) -> tuple[str, float, float]:
        """(status, offset of that status, elapsed) from the time since creation."""
        elapsed = time.monotonic() - task["started"]
        steps = self._progression
        index = max([i for i, (_, at) in enumerate(steps) if at <= elapsed], default=0)
        status, at = steps[index]
        if index == len(steps) - 1 and task["filename"] in self._failing:
            status = "failed"
        return status, at, elapsed

    def _task_json(self, task_id: str, task: dict | None = None) -> dict[str, Any]:
        task = task or self.tasks.get(task_id)
        if task is None:
            raise ApiError(404, "resource_not_exist",
                            f"Resource with id `{task_id}` does not exist in `tasks`.")
        status, at, elapsed = self._state(task)
        meta = {"filename": task["filename"], "duration": None, "width": None, "height": None}
        out: dict[str, Any] = {
            "_id": task["_id"], "index_id": task["index_id"], "video_id": task["video_id"],
            "status": status, "created_at": task["created_at"],
            "updated_at": _rfc3339(task["created_ms"] + int(at * 1000)),
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
        listing = _Listing(query)
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
        listing = _Listing(query)
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

    def _video_json(self, task: dict, *, in_list: bool) -> dict[str, Any]:
        _, at, _ = self._state(task)
        indexed = _rfc3339(task["created_ms"] + int(at * 1000))
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
        created = _rfc3339(self._created_ms)
        return {"_id": index_id, "index_name": index_id, "created_at": created,
                "updated_at": created,
                "models": [{"model_name": name, "model_options": ["visual", "audio"]}
                           for name in self.index_models.get(index_id, DEFAULT_INDEX_MODELS)]}


class _Listing:
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

    def matches(self, task: dict) -> bool:
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


# -- helpers of the transport knobs (redirect_to, rate_limit, inject_randomly, trickle)

@dataclass
class _Limiter:
    """A fixed-window rate limiter like the documented ``X-Ratelimit-*`` headers describe."""

    method: str
    prefix: str
    limit: int
    window: float
    remaining: int = 0
    reset_at: float = 0.0           # epoch seconds, whole (the header's unit)
    refused: int = 0                # requests sent while the window had nothing left

    def take(self) -> _Rule:
        now = time.time()
        if now >= self.reset_at:
            self.remaining, self.reset_at = self.limit, float(math.ceil(now + self.window))
        headers = {"X-Ratelimit-Limit": str(self.limit),
                   "X-Ratelimit-Reset": str(int(self.reset_at))}
        if self.remaining <= 0:
            self.refused += 1
            return _Rule(self.method, self.prefix, 429, None,
                         {**headers, "X-Ratelimit-Remaining": "0"}, 1, None, 0.0)
        self.remaining -= 1
        return _Rule(self.method, self.prefix, 200, None,
                     {**headers, "X-Ratelimit-Remaining": str(self.remaining)}, 1, "pass", 0.0)


@dataclass
class _Chance:
    rule: _Rule
    probability: float
    rng: random.Random
    hits: int = 0


class _Trickle:
    """A writer that sends one byte, then waits: an answer that never quite stalls."""

    def __init__(self, raw: Any, pause: float, stopping: threading.Event) -> None:
        self.raw, self.pause, self.stopping = raw, pause, stopping

    def write(self, data: bytes) -> int:
        for i in range(len(data)):
            self.raw.write(data[i:i + 1])
            if hasattr(self.raw, "flush"):
                self.raw.flush()
            if self.stopping.wait(self.pause):
                raise ConnectionError("fake API stopping")
        return len(data)

    def flush(self) -> None:
        if hasattr(self.raw, "flush"):
            self.raw.flush()


class _SlowReader:
    """Reads a request body at about 1 MiB per ``per_mib`` seconds (a slow uplink)."""

    def __init__(self, raw: Any, per_mib: float, stopping: threading.Event) -> None:
        self.raw, self.per_mib, self.stopping = raw, per_mib, stopping

    def read(self, n: int) -> bytes:
        pieces = []
        while n > 0:
            piece = self.raw.read(min(n, 64 << 10))
            if not piece:
                break
            pieces.append(piece)
            n -= len(piece)
            if self.stopping.wait(self.per_mib * len(piece) / (1 << 20)):
                raise ConnectionError("fake API stopping")
        return b"".join(pieces)

    def readline(self, limit: int = -1) -> bytes:
        return self.raw.readline(limit)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fakeapi", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default="tlk_test_key")
    parser.add_argument("--index", action="append", help="index id (repeatable)")
    parser.add_argument("--api-version", default="v1.3", choices=("v1.3", "v1.2"))
    parser.add_argument("--store-dir", help="save each uploaded file there as <task_id>.bin")
    parser.add_argument("--models", action="append", default=[], metavar="ID=NAME[,NAME]",
                        help="the models GET /indexes/ID lists (repeatable; default "
                             f"{','.join(DEFAULT_INDEX_MODELS)})")
    args = parser.parse_args(argv)
    index_models = {index_id: names.split(",") for index_id, _, names in
                    (item.partition("=") for item in args.models)}
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with FakeTwelveLabs(api_key=args.api_key, indexes=args.index or ["idx_test"],
                        api_version=args.api_version, store_dir=args.store_dir,
                        index_models=index_models, host=args.host, port=args.port) as fake:
        print(fake.base_url, flush=True)
        while not stop.wait(0.2):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
