"""A sink faster than any uploader: reads a request body into one buffer and drops it.

``FakeTwelveLabs`` parses and hashes every multipart body in Python, so on
loopback it, not the client, limits an upload (~1.2 GiB/s). To compare
uploaders by their own cost, ``FastSink`` reads the request head, then exactly
Content-Length bytes with ``recv_into`` (no allocation per block), and answers
a minimal valid ``POST /tasks`` JSON. It checks only the framing: a body that
is shorter than its Content-Length, or chunked, is refused or never answered.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import uuid
from dataclasses import dataclass
from types import TracebackType
from typing import Self

HEAD_LIMIT = 64 << 10


@dataclass(frozen=True)
class SunkRequest:
    request_line: str
    headers: dict[str, str]
    body_bytes: int
    sha256: str | None  # of the body, when the sink was made with digest=True


class FastSink:
    """``with FastSink() as sink: ... sink.base_url ... sink.requests``"""

    def __init__(self, host: str = "127.0.0.1", *, buffer: int = 4 << 20,
                 digest: bool = False) -> None:
        self.digest = digest  # hash each body (for tests; costs CPU a bench must not pay)
        self._listener = socket.create_server((host, 0))
        self.base_url = f"http://{host}:{self._listener.getsockname()[1]}"
        self._buffer = memoryview(bytearray(buffer))
        self.requests: list[SunkRequest] = []
        self._conn: socket.socket | None = None
        self._thread = threading.Thread(target=self._serve, name="fast-sink", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes a blocked accept; close does not
        except OSError:
            pass
        self._listener.close()
        conn = self._conn
        if conn is not None:  # a client that left a request half sent
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(timeout=5)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # closed by __exit__
            self._conn = conn
            with conn:
                try:
                    while self._one_request(conn):
                        pass
                except OSError:
                    pass  # the client went away
            self._conn = None

    def _one_request(self, conn: socket.socket) -> bool:
        """Serve one request on ``conn``; False when the client closed it."""
        head, rest = self._read_head(conn)
        if head is None:
            return False
        request_line, _, header_text = head.partition("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in
                   (line.partition(":") for line in header_text.split("\r\n") if line)}
        if "content-length" not in headers or "transfer-encoding" in headers:
            conn.sendall(_answer(411, {"code": "length_required",
                                       "message": "a Content-Length body is expected"}))
            return False
        length = int(headers["content-length"])
        hasher = hashlib.sha256(rest) if self.digest else None
        if headers.get("expect", "").lower() == "100-continue":
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")  # curl waits 1 s for it
        received = len(rest)
        while received < length:
            got = conn.recv_into(self._buffer, min(len(self._buffer), length - received))
            if got == 0:
                return False  # shorter than promised: no answer, as a real server
            if hasher is not None:
                hasher.update(self._buffer[:got])
            received += got
        self.requests.append(SunkRequest(request_line, headers, received,
                                         hasher.hexdigest() if hasher else None))
        conn.sendall(_answer(200, {"_id": uuid.uuid4().hex[:24],
                                   "video_id": uuid.uuid4().hex[:24]}))
        return True

    @staticmethod
    def _read_head(conn: socket.socket) -> tuple[str | None, bytes]:
        data = b""
        while b"\r\n\r\n" not in data:
            piece = conn.recv(4096)
            if not piece or len(data) > HEAD_LIMIT:
                return None, b""
            data += piece
        head, _, rest = data.partition(b"\r\n\r\n")
        return head.decode("latin-1"), rest


def _answer(status: int, body: dict[str, str]) -> bytes:
    payload = json.dumps(body).encode()
    reason = "OK" if status == 200 else "Length Required"
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n").encode() + payload
