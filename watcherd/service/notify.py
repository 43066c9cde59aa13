"""sd_notify, spoken directly: one UTF-8 datagram per message to ``$NOTIFY_SOCKET``.

Not the ``sdnotify`` package: its last release (0.3.2, 2017) encodes messages
as Latin-1 and swallows the error, so a STATUS naming ``видео.mp4`` silently
never arrives (dependency-trials.md section 4). The protocol is one datagram
of ``KEY=value`` lines (sd_notify(3)); an address starting with ``@`` is in
the abstract namespace. Outside systemd every call is a no-op, and a failed
send is logged once and never raised: telling systemd must not break work.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

logger = logging.getLogger(__name__)


class Notifier:
    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.socket_name = env.get("NOTIFY_SOCKET", "")
        self.address = _socket_address(self.socket_name)
        self.watchdog_interval = _watchdog_interval(env)
        self._status: str | None = None
        self._warned = False
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def watchdog_enabled(self) -> bool:
        return self.enabled and self.watchdog_interval is not None

    def send(self, *lines: str) -> bool:
        """Send one datagram; True when it went out."""
        if self.address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto("\n".join(lines).encode("utf-8"), self.address)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                logger.warning("cannot notify systemd at %s: %s", self.socket_name,
                               exc.strerror or exc)
            return False
        return True

    def ready(self, status: str | None = None) -> None:
        self.send("READY=1", *self._status_lines(status))

    def status(self, text: str) -> None:
        """Update STATUS=, only when the text changed."""
        if text != self._status:
            self.send(*self._status_lines(text))

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def reloading(self) -> None:
        # systemd >= 253 wants the monotonic time to match RELOADING=1 to this reload.
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send("RELOADING=1", f"MONOTONIC_USEC={usec}", *self._status_lines("reloading"))

    def stopping(self) -> None:
        self.send("STOPPING=1", *self._status_lines("stopping"))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _status_lines(self, text: str | None) -> list[str]:
        if text is None:
            return []
        self._status = text = " ".join(text.splitlines())  # one line: newlines end a field
        return [f"STATUS={text}"]


def _socket_address(value: str) -> str | bytes | None:
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None  # vsock and other kinds are not for us


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Seconds between pings (half of ``WATCHDOG_USEC``), or None when not asked."""
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = env.get("WATCHDOG_PID")
    if usec <= 0 or (pid and pid != str(os.getpid())):
        return None
    return usec / 2e6
