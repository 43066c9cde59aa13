"""One daemon per state database.

Two daemons on one database would race for every file (and upload some of
them twice). An exclusive ``flock`` on ``<state_db>.lock`` is held for the
life of the process; the kernel drops it when the process dies however it
dies, so there is never a stale lock to clean up by hand.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from .errors import WatcherdError


class AlreadyRunning(WatcherdError):
    """Another live process holds the state database's lock."""


class InstanceLock:
    def __init__(self, state_db: Path) -> None:
        self.path = Path(f"{state_db}.lock")
        self._fd: int | None = None

    def acquire(self) -> InstanceLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise AlreadyRunning(
                f"another watcherd{f' (pid {holder})' if holder else ''} is already using "
                f"{self.path.with_suffix('')}; stop it first, or give this one its own "
                "state_db") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


def _read_pid(fd: int) -> str | None:
    try:
        text = os.pread(fd, 32, 0).decode().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if text.isdigit() else None
