"""A real webhook receiver on 127.0.0.1 for the tests, checking signatures with the
README's own snippet (so the README cannot drift from what the daemon sends)."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parent.parent / "README.md"
SECRET = b"whsec_test_0123456789abcdef"
HANG_CAP_SECONDS = 30.0  # a hung answer never outlives a test by more than this


def readme_verify() -> Callable[..., bool]:
    """``verify`` exactly as the README's Webhooks section shows it."""
    text = README.read_text()
    section = text[text.index("## Webhooks"):]
    section = section[:section.index("\n## ", 1)]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None, "README Webhooks section has no python block"
    namespace: dict[str, Any] = {}
    exec(compile(code.group(1), "README.md#webhooks", "exec"), namespace)
    return namespace["verify"]


@dataclass(frozen=True)
class Received:
    event: dict[str, Any]
    body: bytes
    signature: str
    valid: bool
    at: float

    @property
    def id(self) -> str:
        return self.event["id"]


class Receiver:
    """``answers``: (status, headers) for the next requests, in order; then 200.
    ``hang()`` makes every request wait (unanswered) until ``release()``."""

    def __init__(self, secret: bytes = SECRET, tolerance: float = 300) -> None:
        self.secret = secret
        self.tolerance = tolerance
        self.verify = readme_verify()
        self.answers: list[tuple[int, dict[str, str]]] = []
        self.received: list[Received] = []  # every request, answered or not
        self.delivered: list[Received] = []  # those answered 2xx
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._released.set()
        self._generation = 0  # release(drop=True) ends the requests held so far, unanswered
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, name="receiver",
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._released.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)

    def hang(self) -> None:
        self._released.clear()

    def release(self, drop: bool = False) -> None:
        """Answer the held requests, or with ``drop`` close them unanswered (their sender
        is gone, e.g. killed) and take no part in ``delivered``."""
        if drop:
            self._generation += 1
        self._released.set()

    def ids(self) -> list[str]:
        with self._lock:
            return [r.id for r in self.delivered]

    def _arrived(self, request: Received) -> None:
        with self._lock:
            self.received.append(request)

    def _take(self, request: Received) -> tuple[int, dict[str, str]]:
        with self._lock:
            answer = self.answers.pop(0) if self.answers else (200, {})
            if 200 <= answer[0] < 300:
                self.delivered.append(request)
            return answer

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                header = self.headers.get("Watcherd-Signature", "")
                valid = receiver.verify(receiver.secret, header, body, receiver.tolerance)
                request = Received(json.loads(body), body, header, valid, time.monotonic())
                receiver._arrived(request)
                generation = receiver._generation
                if (not receiver._released.wait(HANG_CAP_SECONDS)
                        or generation != receiver._generation):
                    return
                status, headers = receiver._take(request)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        return Handler
