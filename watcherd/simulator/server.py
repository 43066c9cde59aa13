"""The simulator as one object: a catalog, fault switches and an HTTP server on loopback.

``FakeTwelveLabs`` is what tests, the benchmarks, ``watcherd simulator`` and
``watcherd demo`` start. It speaks the documented JSON (see
/work/shared/research/twelvelabs-api.md sections 1-4), parses real multipart bodies as a
stream (a 1.5 GB upload uses constant memory), refuses what Twelve Labs refuses, and can
inject the failures a real client must survive: 429 with an empty body, non-JSON 5xx,
connection resets before, during and after the task was created, slow answers, answers
trickled byte by byte, a front that redirects elsewhere, a rate limiter with
``X-Ratelimit-*`` headers, and seeded random faults (``faults.FaultSwitches``).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Self

from watcherd.simulator.assets import AssetStore
from watcherd.simulator.catalog import DEFAULT_PROGRESSION, Catalog, Progression
from watcherd.simulator.faults import FaultSwitches
from watcherd.simulator.handler import RecordedRequest, SimulatorServer

DEFAULT_KEY = "tlk_test_key"
DEFAULT_INDEX = "idx_test"


class FakeTwelveLabs(Catalog, FaultSwitches, AssetStore):
    """The simulated API. Use as a context manager; ``base_url`` is valid once started.

    ``requests`` lists every request in the order its answer went out (it is appended just
    before answering, so a client never sees an answer the record does not have yet).
    ``tasks`` (see ``Catalog``) holds the uploads; the status is derived on each read.
    ``errors`` holds tracebacks of bugs in the simulator itself.
    The assets flow (multipart uploads, assets, indexed assets) is ``AssetStore``'s.
    """

    def __init__(self, *, api_key: str = DEFAULT_KEY, indexes: Iterable[str] = (DEFAULT_INDEX,),
                 api_version: str = "v1.3", progression: Progression = DEFAULT_PROGRESSION,
                 index_models: dict[str, list[str]] | None = None,
                 store_dir: str | os.PathLike[str] | None = None,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        Catalog.__init__(self, indexes, api_version, progression, index_models)
        FaultSwitches.__init__(self)
        self.api_key = api_key
        self.store_dir = Path(store_dir) if store_dir is not None else None
        AssetStore.__init__(self, self._now_ms, lambda index_id: index_id in self.indexes,
                            self._failing.get, self.store_dir)
        self.host, self.port = host, port
        self.requests: list[RecordedRequest] = []
        self.errors: list[str] = []  # tracebacks of bugs in the simulator itself
        # Upload body bytes read, dropped requests included: what a client really sent
        # ("tasks": POST /tasks, "storage": chunk PUTs).
        self.body_bytes = {"tasks": 0, "storage": 0}
        self._stopping = threading.Event()
        self._server: SimulatorServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("already started")
        if self.store_dir is not None:
            self.store_dir.mkdir(parents=True, exist_ok=True)
        self._stopping.clear()
        self._server = SimulatorServer((self.host, self.port), self)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        name="simulator-serve", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()  # wakes injected delays
        server.shutdown()
        assert self._thread is not None
        self._thread.join()
        server.close_connections(timeout=5.0)
        server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the simulator is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/{self.api_version}"

    # -- what a test reads back ---------------------------------------------

    def uploads(self) -> list[RecordedRequest]:
        """Successful ``POST /tasks`` that created a task (and got the answer)."""
        with self._lock:
            recorded = list(self.requests)
        return [r for r in recorded if r.method == "POST" and r.status == 200 and r.task_id]

    def count(self, method: str, path_prefix: str) -> int:
        with self._lock:
            recorded = list(self.requests)
        return sum(1 for r in recorded if r.method == method.upper()
                   and (rel := self._relative(r.path)) is not None and rel.startswith(path_prefix))

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    # -- internals used by the handler --------------------------------------

    def _relative(self, path: str) -> str | None:
        """The path under ``/<api_version>``, or None for anything outside it."""
        prefix = "/" + self.api_version
        if path == prefix or path.startswith(prefix + "/"):
            return path[len(prefix):] or "/"
        return None

    def _count_body(self, kind: str, n: int) -> None:
        with self._lock:
            self.body_bytes[kind] += n

    def _record(self, rec: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(rec)
