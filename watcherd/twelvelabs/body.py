"""Upload bodies that hand the file's own reads to the socket, never a copy of them.

requests-toolbelt's ``MultipartEncoder`` copied every 1 MiB block into a
fresh ``BytesIO`` and out again (44 % of upload CPU, a page fault per 4 KiB
sent). Here the file is read with ``readinto`` into one reused buffer and a
``memoryview`` of it goes to urllib3, which passes it to ``sendall`` before it
asks for the next block: one copy from the page cache, as curl does.

``RangedFileReader`` is one byte range of a file (the whole file for
``POST /tasks``; one chunk of a multipart-asset upload for its ``PUT``);
``MultipartBody`` puts form fields around one. Both have an exact ``len()``,
so requests sends a Content-Length and never chunked encoding.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from typing import Any, BinaryIO

from urllib3.fields import RequestField

from watcherd.errors import WatcherdError

BLOCK = 1 << 20  # what urllib3 asks for through BigBlockAdapter


class FileShrank(WatcherdError):
    """The file ended before the length promised in Content-Length."""


class RangedFileReader:
    """``length`` bytes of ``fh`` from ``offset``, read into one reused buffer.

    ``read`` returns a memoryview that is valid until the next ``read``: the
    HTTP client sends each block before it reads the next. Reads use ``pread``
    at an explicit position, so the shared file position does not matter.
    """

    def __init__(self, fh: BinaryIO, offset: int = 0, length: int | None = None,
                 *, block: int = BLOCK) -> None:
        self._fd = fh.fileno()
        if length is None:
            length = os.fstat(self._fd).st_size - offset
        if offset < 0 or length < 0:
            raise ValueError(f"bad range: offset {offset}, length {length}")
        self.offset, self.length = offset, length
        self.position = 0  # bytes handed out so far
        self._buffer = bytearray(min(block, length) or 1)
        self._view = memoryview(self._buffer)

    def __len__(self) -> int:
        return self.length

    def read(self, size: int = -1, /) -> memoryview:
        left = self.length - self.position
        if size < 0 or size > len(self._buffer):
            size = len(self._buffer)
        size = min(size, left)
        if size == 0:
            return self._view[:0]
        got = os.preadv(self._fd, [self._view[:size]], self.offset + self.position)
        if got == 0:
            raise FileShrank(f"the file ended {left} bytes before the length being sent")
        self.position += got
        return self._view[:got]


class MultipartBody:
    """A multipart/form-data body: text fields, then one file part, read in order.

    ``on_read(bytes_sent_so_far)`` is called after every read; it may raise to
    stop the upload (the request then fails with that exception).
    """

    def __init__(self, fields: dict[str, str], file_field: str, filename: str,
                 reader: RangedFileReader, *,
                 content_type: str = "application/octet-stream",
                 on_read: Callable[[int], None] | None = None) -> None:
        self.boundary = uuid.uuid4().hex
        head = b"".join(self._part_head(RequestField(name, value)) + value.encode() + b"\r\n"
                        for name, value in fields.items())
        file_part = RequestField(file_field, b"", filename=filename)
        head += self._part_head(file_part, content_type)
        self._parts: list[Any] = [_Bytes(head), reader,
                                  _Bytes(f"\r\n--{self.boundary}--\r\n".encode())]
        self._len = sum(len(p) for p in self._parts)
        self.on_read = on_read
        self.bytes_read = 0

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def __len__(self) -> int:
        return self._len

    def read(self, size: int = -1, /) -> bytes | memoryview:
        while self._parts:
            data = self._parts[0].read(size)
            if len(data):
                self.bytes_read += len(data)
                if self.on_read is not None:
                    self.on_read(self.bytes_read)
                return data
            self._parts.pop(0)
        return b""

    def _part_head(self, part: RequestField, content_type: str | None = None) -> bytes:
        part.make_multipart(content_type=content_type)
        return f"--{self.boundary}\r\n{part.render_headers()}".encode()


class _Bytes:
    """A small in-memory part (field headers, the closing boundary)."""

    def __init__(self, data: bytes) -> None:
        self._data, self._at = data, 0

    def __len__(self) -> int:
        return len(self._data)

    def read(self, size: int = -1, /) -> bytes:
        end = len(self._data) if size < 0 else self._at + size
        data, self._at = self._data[self._at:end], min(end, len(self._data))
        return data
