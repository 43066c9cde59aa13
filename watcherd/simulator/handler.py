"""The simulator's HTTP side: a threaded server on loopback and its request handler.

The handler reads every request body for real (``multipart``), asks the fault switches
whether this request gets something other than the normal answer, routes the rest to
the catalog, and records each request just before answering it. Keep-alive connections
are tracked so ``stop()`` can end them, and a dropped connection is a real RST.
"""

from __future__ import annotations

import functools
import json
import secrets
import socket
import socketserver
import struct
import sys
import threading
import time
import traceback
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from watcherd.simulator import asset_routes, usermetadata
from watcherd.simulator.faults import MIDBODY_MIN, Rule, SlowReader, Throttle, Trickle
from watcherd.simulator.multipart import (
    ApiError,
    Body,
    Dropped,
    UploadedFile,
    parse_header,
    read_form,
)

if TYPE_CHECKING:
    from watcherd.simulator.server import FakeTwelveLabs


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
    answer_headers: dict[str, str] = field(default_factory=dict)  # set by the route
    at: float = field(default_factory=time.time)  # when the request arrived


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


class Counted:
    """Counts an upload body's bytes as they are read: a bench can watch them arrive."""

    def __init__(self, raw: Any, count: Callable[[int], None]) -> None:
        self.raw, self.count = raw, count

    def read(self, n: int) -> bytes:
        data = self.raw.read(n)
        self.count(len(data))
        return data

    def readline(self, limit: int = -1) -> bytes:
        line = self.raw.readline(limit)
        self.count(len(line))
        return line


class SimulatorServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], fake: FakeTwelveLabs) -> None:
        self.fake = fake
        self.lock = threading.Lock()
        self.conns: dict[threading.Thread, socket.socket] = {}  # so stop() can end them
        self.hard_close: set[socket.socket] = set()              # connections to RST
        super().__init__(address, Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn); skip it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(target=self._serve, args=(request, client_address),
                                  name="simulator-conn", daemon=True)
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


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else small answers wait 40 ms for a delayed ACK
    server: SimulatorServer

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
        if rel is None and asset_routes.is_storage(url.path):
            rel = url.path  # so the fault switches reach the storage side too
        upload = "storage" if asset_routes.is_storage(url.path) else \
            "tasks" if rel == "/tasks" and self.command == "POST" else None
        if upload:
            body.rfile = Counted(body.rfile, functools.partial(fake._count_body, upload))
        rate = fake.throttle_bytes_per_second
        if rate and upload:
            body.rfile = Throttle(body.rfile, rate, fake._stopping)
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
        except Exception:  # noqa: BLE001 (a simulator bug: kept in fake.errors, answered 500)
            fake.errors.append(traceback.format_exc())
            self.close_connection = True
            if not self._recorded:
                self._respond(rec, body, 500, {"code": "fake_bug", "message": "see fake.errors"})

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _route(self, rec: RecordedRequest, body: Body, rel: str | None) -> tuple[int, Any]:
        fake = self.server.fake
        if asset_routes.is_storage(rec.path):
            return asset_routes.storage(self, rec, body)
        if rec.headers.get("x-api-key") != fake.api_key:
            return 401, {"code": "api_key_invalid", "message": "API Key is either invalid or "
                         "expired. Please check your API key and try again."}
        parts = (rel or "").strip("/").split("/")
        try:
            if rel is None:
                pass
            elif (routed := asset_routes.route(self, rec, body, parts)) is not None:
                return routed
            elif self.command == "POST" and parts == ["tasks"] and fake.tasks_removed_status:
                return fake.tasks_removed_status, {
                    "code": "endpoint_removed" if fake.tasks_removed_status == 410 else
                    "not_found", "message": f"{self.command} {rec.path} not found: this "
                    "endpoint was removed; use multipart uploads and indexed assets."}
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
            metadata = usermetadata.from_text(rec.fields.get("user_metadata"))
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
        task = fake._add_task(task_id, rec.fields, rec.file, metadata)
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
        extra = {**rec.answer_headers, **(headers or {})}
        for key, val in extra.items():  # caller's headers win, case-insensitively
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
                           rule: Rule) -> None:
        """The normal answer, but trickled, read slowly, or with the rule's extra headers."""
        stopping = self.server.fake._stopping
        if rule.action == "slow_read":
            body.rfile = SlowReader(body.rfile, rule.delay, stopping)
        saved = self.wfile
        if rule.action == "trickle":
            self.wfile = Trickle(saved, rule.delay, stopping)  # type: ignore[assignment]
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


