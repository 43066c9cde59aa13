"""The ``metrics.listen`` listener: ``/metrics`` for Prometheus, ``/healthz`` for probes.

A ``ServiceThread`` that answers one request per step, in its own thread:
a scrape reads SQLite, and one thread keeps to one connection (the store opens
one per thread and keeps it until it closes). A client that stalls is cut off
after ``CLIENT_TIMEOUT_SECONDS``. ``/healthz`` answers with the main loop's
verdict (``Monitor.verdict``): 200 ``ok`` while the watchdog would be pinged,
503 and the reason otherwise. The socket is bound when the object is made, so
a port in use stops the start with ``ListenError``, before any file is taken.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, cast

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from watcherd.metricsconfig import MetricsConfig
from watcherd.threads import ServiceThread

logger = logging.getLogger(__name__)

CLIENT_TIMEOUT_SECONDS = 5.0
STEP_SECONDS = 0.5  # how long one step waits for a connection: the stop event's latency


class ListenError(OSError):
    """``metrics.listen`` cannot be bound (in use, not an address of this machine)."""


class MetricsServer(ServiceThread):
    def __init__(self, config: MetricsConfig, registry: CollectorRegistry,
                 verdict: Callable[[], str | None]) -> None:
        super().__init__("metrics")
        assert config.listen is not None
        host, port = config.listen
        try:
            self.httpd = MetricsHttpServer((host, port), registry, verdict)
        except OSError as exc:
            raise ListenError(f"metrics.listen {config.url}: cannot listen there: "
                              f"{exc.strerror or exc}") from exc
        bound_host, self.port = self.httpd.server_address[:2]
        self.url = MetricsConfig(listen=(str(bound_host), self.port)).url

    def setup(self) -> None:
        logger.info("metrics: serving %s/metrics and %s/healthz", self.url, self.url)

    def step(self) -> None:
        self.httpd.handle_request()

    def teardown(self) -> None:
        self.httpd.server_close()

    def close(self) -> None:
        """Stop serving and free the port, whether or not the thread ever started."""
        self.stop()
        if self.ident is not None:
            self.join(STEP_SECONDS + CLIENT_TIMEOUT_SECONDS + 1)
        self.httpd.server_close()


class MetricsHttpServer(HTTPServer):
    def __init__(self, address: tuple[str, int], registry: CollectorRegistry,
                 verdict: Callable[[], str | None]) -> None:
        # Read by the constructor when it makes the socket.
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.registry = registry
        self.verdict = verdict
        super().__init__(address, Handler)
        self.timeout = STEP_SECONDS

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver calls this from inside its except block: the traceback is there.
        logger.error("metrics: answering %s failed", client_address,
                     exc_info=True)  # noqa: LOG014


class Handler(BaseHTTPRequestHandler):
    timeout = CLIENT_TIMEOUT_SECONDS
    server_version = "watcherd"

    def do_GET(self) -> None:
        server = cast(MetricsHttpServer, self.server)
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            encode, content_type = choose_encoder(self.headers.get("Accept", ""))
            self._answer(200, content_type, encode(server.registry))
        elif path == "/healthz":
            reason = server.verdict()
            body = "ok" if reason is None else reason
            self._answer(200 if reason is None else 503, "text/plain; charset=utf-8",
                         (" ".join(body.split()) + "\n").encode())
        else:
            self._answer(404, "text/plain; charset=utf-8", b"not found: try /metrics or "
                         b"/healthz\n")

    def _answer(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("metrics: %s %s", self.address_string(), format % args)
