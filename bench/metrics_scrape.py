"""What one Prometheus scrape of ``/metrics`` costs on a big database (issue 19: cheap).

Builds a state database with N files (default 100,000, ``bench.bigdb``), puts the
daemon's metrics on it (``Metrics`` with ``DaemonGauges`` over the real store,
gate and index pauses) behind the real listener, and times GET /metrics and
GET /healthz over HTTP: best and median of R scrapes, and the exposition's size.

    .venv/bin/python -m bench.metrics_scrape [--files N] [--scrapes R]
"""

from __future__ import annotations

import argparse
import queue
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.bigdb import build
from watcherd.config import parse_config
from watcherd.ingest.gate import UploadGate
from watcherd.ingest.indexpause import IndexPauses
from watcherd.intake.watcher import Scanner, Watcher
from watcherd.metricsconfig import MetricsConfig
from watcherd.service.metrics import DaemonGauges, Metrics
from watcherd.service.metricsserver import MetricsServer
from watcherd.state.store import Store


def timed_gets(url: str, scrapes: int) -> tuple[list[float], int]:
    times, size = [], 0
    for _ in range(scrapes):
        started = time.perf_counter()
        with urllib.request.urlopen(url, timeout=30) as answer:
            size = len(answer.read())
        times.append(time.perf_counter() - started)
    return times, size


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench.metrics_scrape")
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--scrapes", type=int, default=50)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        inbox = root / "inbox"
        inbox.mkdir()
        build(root / "state.db", inbox, args.files, history_per_file=3)
        store = Store(root / "state.db").open()
        config = parse_config({"folders": [{"path": str(inbox), "index_id": "idx"}]},
                              base_dir=root, env={})
        intake: queue.SimpleQueue = queue.SimpleQueue()
        metrics = Metrics()
        metrics.watch(DaemonGauges(  # the daemon's parts, its observers not started
            store=store, gate=UploadGate(), index_pauses=IndexPauses(lambda: config),
            watcher=Watcher(config, intake, Scanner(config, intake)),
            queues={"upload": lambda: 0}, folders=lambda: [inbox], verdict=lambda: None))
        server = MetricsServer(MetricsConfig(listen=("127.0.0.1", 0)), metrics.registry,
                               lambda: None)
        server.start()
        try:
            print(f"{args.files:,} files in the database; {args.scrapes} scrapes each")
            print(f"{'request':<14} {'best ms':>8} {'median ms':>10} {'bytes':>8}")
            for path in ("/metrics", "/healthz"):
                times, size = timed_gets(server.url + path, args.scrapes)
                print(f"GET {path:<10} {min(times) * 1000:>8.2f} "
                      f"{statistics.median(times) * 1000:>10.2f} {size:>8,}")
        finally:
            server.close()
            store.close()


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
