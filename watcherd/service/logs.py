"""Logging setup: journald-aware, never a secret.

When stderr is the journal (``$JOURNAL_STREAM`` names stderr's device and
inode; merely being set is not enough, systemd.exec(5)), every line gets its
``<N>`` syslog priority, traceback lines included, and no timestamp since
journald records one. Otherwise a human format with timestamps.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, TextIO

HUMAN_FORMAT = "%(asctime)s %(levelname)-7s [%(threadName)s] %(name)s: %(message)s"
JOURNAL_FORMAT = "%(levelname)s [%(threadName)s] %(name)s: %(message)s"


def syslog_priority(levelno: int) -> int:
    if levelno <= logging.DEBUG:
        return 7
    if levelno <= logging.INFO:
        return 6
    if levelno <= logging.WARNING:
        return 4
    if levelno <= logging.ERROR:
        return 3
    return 2


class JournalFormatter(logging.Formatter):
    """Prefix every line with ``<N>`` so journald files tracebacks at the right priority."""

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{syslog_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).splitlines())


def stderr_is_journal(stream: TextIO = sys.stderr, env: dict[str, str] | None = None) -> bool:
    value = (os.environ if env is None else env).get("JOURNAL_STREAM", "")
    try:
        device, inode = (int(part) for part in value.split(":"))
        st = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (device, inode)


class ConsoleHandler(logging.Handler):
    """Writes through a rich Console, so lines scroll above the live upload bars."""

    def __init__(self, console: Any) -> None:
        super().__init__()
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.console.print(self.format(record), markup=False, highlight=False,
                               soft_wrap=True, style=_STYLES.get(record.levelno))
        except Exception:  # noqa: BLE001 (logging.Handler's contract: report, never raise)
            self.handleError(record)


_STYLES = {logging.WARNING: "yellow", logging.ERROR: "red", logging.CRITICAL: "bold red"}


def setup_logging(level: str = "info", stream: TextIO | None = None,
                  console: Any = None) -> None:
    """Journal format when stderr is the journal; else human lines (via ``console`` if given)."""
    stream = stream or sys.stderr
    handler: logging.Handler
    if stderr_is_journal(stream):
        handler = logging.StreamHandler(stream)
        handler.setFormatter(JournalFormatter(JOURNAL_FORMAT))
    else:
        handler = ConsoleHandler(console) if console else logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter(HUMAN_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # urllib3 logs every connection at DEBUG and retries at WARNING; ours say more.
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    logging.getLogger("watchdog").setLevel(logging.WARNING)
