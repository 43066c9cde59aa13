"""Streaming request-body and multipart/form-data parsing for the simulator.

Bodies are read in pieces of at most 1 MiB (Content-Length or chunked), and a
multipart body keeps only a delimiter-sized tail between pieces, so a 1.5 GB
upload is hashed and counted in constant memory.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol
from urllib.parse import unquote

PIECE = 1 << 20             # read bodies in pieces of at most 1 MiB
MAX_FIELD = 1 << 20         # non-file form fields are kept in memory, so cap them
MAX_PART_HEADERS = 16 << 10


@dataclass
class UploadedFile:
    field: str
    filename: str
    content_type: str
    size: int
    sha256: str


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class Dropped(Exception):
    """The client went away mid-request: there is nobody left to answer."""


_PARAM = re.compile(r';\s*([^\s=;]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')


def parse_header(value: str) -> tuple[str, dict[str, str]]:
    """``'form-data; name="a"'`` -> ``("form-data", {"name": "a"})``; handles RFC 5987 ``*``."""
    head, _, rest = value.partition(";")
    params: dict[str, str] = {}
    starred: set[str] = set()
    for key, raw in _PARAM.findall(";" + rest):
        key, raw = key.lower(), raw.strip()
        if len(raw) >= 2 and raw[0] == raw[-1] == '"':
            # urllib3 2.x (under requests-toolbelt) escapes '"' as %22, like browsers do.
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1]).replace("%22", '"')
        if key.endswith("*"):
            charset, _, encoded = raw.partition("'")
            key, raw = key[:-1], unquote(encoded.partition("'")[2], charset or "utf-8", "replace")
            starred.add(key)
        elif key in starred:
            continue  # filename* wins over filename
        params[key] = raw
    return head.strip().lower(), params


class ByteSource(Protocol):
    """The socket's reading side, or a wrapper that slows it down."""

    def read(self, n: int, /) -> bytes: ...

    def readline(self, limit: int = -1, /) -> bytes: ...


class Body:
    """A request body read in <= 1 MiB pieces, per Content-Length or chunked encoding."""

    def __init__(self, rfile: ByteSource, length: int | None, chunked: bool) -> None:
        self.rfile, self.length, self.chunked = rfile, length, chunked
        self.remaining = length or 0
        self.done = not chunked and not length
        self.read = 0
        self._chunk_left = 0

    def pieces(self, limit: int | None = None) -> Iterator[bytes]:
        while not self.done and (limit is None or self.read < limit):
            want = PIECE if limit is None else min(PIECE, limit - self.read)
            data = self._next(want)
            self.read += len(data)
            if data:
                yield data

    def drain(self) -> None:
        for _ in self.pieces():
            pass

    def _exactly(self, n: int) -> bytes:
        data = self.rfile.read(n)
        if len(data) < n:
            raise Dropped("body ended early")
        return data

    def _next(self, want: int) -> bytes:
        if not self.chunked:
            data = self._exactly(min(want, self.remaining))
            self.remaining -= len(data)
            self.done = self.remaining == 0
            return data
        if self._chunk_left == 0:
            line = self.rfile.readline(1024)
            if not line.endswith(b"\n"):
                raise Dropped("broken chunk header")
            try:
                self._chunk_left = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                raise Dropped("broken chunk header") from None
            if self._chunk_left == 0:  # last chunk: skip trailers up to the blank line
                while (line := self.rfile.readline(8192)) not in (b"\r\n", b"\n"):
                    if not line:
                        raise Dropped("body ended in the trailers")
                self.done = True
                return b""
        data = self._exactly(min(want, self._chunk_left))
        self._chunk_left -= len(data)
        if self._chunk_left == 0 and self._exactly(2) != b"\r\n":
            raise Dropped("broken chunk framing")
        return data


def read_form(body: Body, boundary: bytes,
               sink: BinaryIO | None) -> tuple[dict[str, str], UploadedFile | None]:
    """Stream a multipart/form-data body: text fields in memory, ``video_file`` hashed.

    Only a tail of ``len(delimiter)`` bytes is kept between pieces, so memory stays flat.
    """
    delim = b"\r\n--" + boundary
    buf = b"\r\n"  # so the first boundary line looks like every later one
    pieces = body.pieces()
    fields: dict[str, str] = {}
    upload: UploadedFile | None = None
    state = "preamble"
    part: tuple[str, str | None, str] | None = None  # name, filename, content type
    value, hasher, size = bytearray(), hashlib.sha256(), 0

    def bad(why: str) -> ApiError:
        return ApiError(400, "parameter_invalid", f"The multipart body is invalid: {why}.")

    def more() -> None:
        nonlocal buf
        piece = next(pieces, None)
        if piece is None:
            raise bad("it ended before the closing boundary")
        buf += piece

    def emit(data: memoryview) -> None:
        nonlocal size
        if part is None or not data:
            return  # preamble, or a part without a name
        if part[1] is not None:
            if part[0] == "video_file" and upload is None:
                hasher.update(data)
                size += len(data)
                if sink is not None:
                    sink.write(data)
        elif len(value) + len(data) > MAX_FIELD:
            raise bad(f"field {part[0]!r} is larger than {MAX_FIELD} bytes")
        else:
            value.extend(data)

    while True:
        if state in ("preamble", "body"):
            at = buf.find(delim)
            if at < 0:
                keep = len(delim) - 1  # the delimiter may straddle two pieces
                if len(buf) > keep:
                    emit(memoryview(buf)[:-keep])
                    buf = buf[-keep:]
                more()
                continue
            emit(memoryview(buf)[:at])
            buf = buf[at + len(delim):]
            if part is not None:
                name, filename, ctype = part
                if filename is None:
                    fields[name] = value.decode("utf-8", "replace")
                elif name == "video_file" and upload is None:
                    upload = UploadedFile(name, filename, ctype, size, hasher.hexdigest())
            part, value = None, bytearray()
            state = "delimiter"
        elif state == "delimiter":
            while len(buf) < 2:
                more()
            if buf.startswith(b"--"):
                body.drain()  # the epilogue, ignored
                return fields, upload
            if not buf.startswith(b"\r\n"):
                raise bad("a boundary line is followed by garbage")
            buf, state = buf[2:], "headers"
        else:  # "headers"
            end = 0 if buf.startswith(b"\r\n") else buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_PART_HEADERS:
                    raise bad("part headers too large")
                more()
                continue
            headers = {}
            try:  # RFC 7578: a filename is UTF-8; anything else is the client's bug
                head = bytes(buf[:end]).decode("utf-8")
            except UnicodeDecodeError:
                raise bad("part headers are not valid UTF-8") from None
            for line in head.split("\r\n"):
                key, _, val = line.partition(":")
                headers[key.strip().lower()] = val.strip()
            buf = buf[end + (2 if end == 0 else 4):]
            disposition, params = parse_header(headers.get("content-disposition", ""))
            if disposition == "form-data" and "name" in params:
                part = (params["name"], params.get("filename"),
                        headers.get("content-type", "text/plain"))
            state = "body"
