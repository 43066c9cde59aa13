"""A Twelve Labs API simulator: the fake API that the tests, the benchmarks and users share.

It is a peer of the real API, not a part of the daemon: watcherd's own code talks to
whatever ``api.base_url`` names and never imports this package (a test holds that line).
Only the test suite, ``bench/`` and the ``watcherd simulator`` and ``watcherd demo``
commands do. It stays strict: it parses real bodies and refuses what Twelve Labs
refuses, so it never hides a client bug.

- ``server``: ``FakeTwelveLabs``, the object to start (lifecycle, what was recorded)
- ``handler``: the HTTP server and request handler (routing, answers, dropped connections)
- ``faults``: the fault switches (inject, rate_limit, inject_randomly, redirect_to)
- ``catalog``: the account's indexes, tasks and videos, and the JSON shown of them
- ``uploads``: multipart upload sessions, the storage side of their presigned URLs
- ``assets``: assets and indexed assets (the current flow, after the upload)
- ``asset_routes``: their HTTP routes, and the presigned storage URLs the fake serves
- ``multipart``: streaming request bodies and multipart/form-data parsing
- ``sink``: ``FastSink``, a server that only counts (and optionally hashes) request bodies,
  faster than any uploader, for the upload benches
- ``switches``: the fault switches as command-line options (``watcherd simulator``)
- ``clips``: tiny test videos generated with PyAV (imports PyAV; not loaded by the rest)
"""

from watcherd.simulator.catalog import DEFAULT_PROGRESSION
from watcherd.simulator.handler import RecordedRequest
from watcherd.simulator.server import FakeTwelveLabs

__all__ = ["DEFAULT_PROGRESSION", "FakeTwelveLabs", "RecordedRequest"]
