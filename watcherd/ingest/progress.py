"""Upload progress: shared counters, journal lines, and a live display on a terminal.

Three readers want it: the systemd STATUS line and ``watcherd status`` (via
``Progress``), the journal (``ProgressLog``: a line per 25 % or per 10 s,
whichever comes first, so a 2 GB upload is visible without flooding), and an
operator running ``watcherd run`` in a terminal (``TerminalProgress``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from watcherd.state.schema import FileRecord
from watcherd.units import human_bytes

logger = logging.getLogger(__name__)

LOG_EVERY_SECONDS = 10.0
LOG_EVERY_FRACTION = 0.25


@dataclass
class Progress:
    """Bytes sent per uploading file, shared with status views."""

    sent: dict[int, tuple[int, int]] = field(default_factory=dict)
    # Chunks done and in all, on the multipart path.
    chunks: dict[int, tuple[int, int]] = field(default_factory=dict)
    started: dict[int, float] = field(default_factory=dict)
    # Kept here so status views name an upload without a database read.
    paths: dict[int, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def update(self, file_id: int, done: int, total: int, path: str, *,
               chunks: tuple[int, int] | None = None) -> None:
        with self.lock:
            self.sent[file_id] = (done, total)
            if chunks is not None:
                self.chunks[file_id] = chunks
            self.started.setdefault(file_id, time.monotonic())
            self.paths[file_id] = path

    def clear(self, file_id: int) -> None:
        with self.lock:
            self.sent.pop(file_id, None)
            self.chunks.pop(file_id, None)
            self.started.pop(file_id, None)
            self.paths.pop(file_id, None)

    def snapshot(self) -> dict[int, tuple[int, int]]:
        with self.lock:
            return dict(self.sent)

    def uploads(self) -> list[tuple[int, str, int, int]]:
        """(file id, path, bytes sent, total bytes) of every upload, by file id."""
        with self.lock:
            return [(i, self.paths[i], *self.sent[i]) for i in sorted(self.sent)]

    def chunks_of(self, file_id: int) -> tuple[int, int] | None:
        """(chunks done, chunks in all) of a multipart upload, else None."""
        with self.lock:
            return self.chunks.get(file_id)

    def rate(self, file_id: int) -> float | None:
        """Bytes per second since this upload's first block, or None."""
        with self.lock:
            if file_id not in self.started:
                return None
            elapsed = time.monotonic() - self.started[file_id]
            return self.sent[file_id][0] / elapsed if elapsed > 0.5 else None


class ProgressLog:
    """Logs one upload's progress at each 25 % step, or after 10 s of no line."""

    def __init__(self, path: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = os.path.basename(path)
        self.clock = clock
        self.started = clock()
        self.last_line = self.started
        self.next_fraction = LOG_EVERY_FRACTION

    def update(self, done: int, total: int, *, chunks: tuple[int, int] | None = None) -> None:
        if total <= 0 or done >= total:
            return  # the end is logged by the pipeline ("uploaded … in …")
        now = self.clock()
        fraction = done / total
        if fraction < self.next_fraction and now - self.last_line < LOG_EVERY_SECONDS:
            return
        while self.next_fraction <= fraction:
            self.next_fraction += LOG_EVERY_FRACTION
        self.last_line = now
        rate = done / max(now - self.started, 1e-3)
        logger.info("uploading %s: %d%% (%s of %s, %s/s%s)", self.name, int(100 * fraction),
                    human_bytes(done, unit="MiB"), human_bytes(total, unit="MiB"),
                    human_bytes(rate, unit="MiB"), chunk_count(chunks, ", "))


class TerminalProgress:
    """A live bar per upload under the log lines, for ``watcherd run`` on a terminal."""

    def __init__(self, console: Any) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
        from rich.progress import Progress as Bars
        self.bars = Bars(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                         TransferSpeedColumn(), TimeRemainingColumn(), console=console,
                         transient=True)
        self.tasks: dict[int, Any] = {}

    def __enter__(self) -> TerminalProgress:
        self.bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bars.stop()

    def show(self, uploads: dict[int, tuple[str, int, int]]) -> None:
        """``uploads``: file id → (name, bytes sent, total bytes)."""
        for file_id in list(self.tasks):
            if file_id not in uploads:
                self.bars.remove_task(self.tasks.pop(file_id))
        for file_id, (name, done, total) in uploads.items():
            if file_id not in self.tasks:
                self.tasks[file_id] = self.bars.add_task(name, total=total)
            self.bars.update(self.tasks[file_id], completed=done, total=total, description=name)


def chunk_count(chunks: tuple[int, int] | None, prefix: str = "") -> str:
    """"chunk 12/40" for a multipart upload, "" for any other."""
    return f"{prefix}chunk {chunks[0]}/{chunks[1]}" if chunks else ""


def upload_summary(record: FileRecord, now: float) -> str:
    """The history line of a finished upload: how much, how long, how fast."""
    seconds = max(now - (record.upload_started_at or now), 1e-3)
    size = record.size or 0
    return (f"uploaded {human_bytes(size)} in {seconds:.1f}s "
            f"({human_bytes(int(size / seconds))}/s)")
