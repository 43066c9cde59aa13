"""Pick-up latency: from ``close()`` of a finished file to its POST reaching the API.

A file is written straight into the inbox (open, write, close), one every
0.2 s; the fake API stamps each POST /tasks as it arrives. The floor is
``settle_seconds`` (watcherd waits that long after the last change, by
design), so the target is p95 below settle_seconds + 1 s.

    .venv/bin/python -m bench.pickup_latency [--files 50] [--settle 5 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.harness import Daemon, distinct_clips, percentile, print_table, until
from watcherd.simulator import FakeTwelveLabs

DEFAULT_SETTLE = 5.0  # watcherd's default settle_seconds


def measure(files: int, settle: float) -> list[float]:
    """Seconds from close() to POST arrival, one per file."""
    with tempfile.TemporaryDirectory() as tmp, FakeTwelveLabs() as fake:
        root = Path(tmp)
        clips = [p.read_bytes() for p in distinct_clips(root / "clips", files)]
        closed: dict[str, float] = {}
        with Daemon(root, fake.base_url, fake.api_key, settle_seconds=settle) as daemon:
            for n, data in enumerate(clips):
                name = f"take-{n:03d}.mp4"
                with open(daemon.inboxes[0] / name, "wb") as fh:
                    fh.write(data)
                closed[name] = time.time()  # right after close(): the clock starts here
                time.sleep(0.2)
            until(lambda: len(fake.uploads()) >= files, 120 + settle, "every upload")
        arrived = {u.file.filename: u.at for u in fake.uploads()}
    return [arrived[name] - at for name, at in closed.items()]


def main(argv: list[str] | None = None) -> list[tuple[str, ...]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=50)
    parser.add_argument("--settle", type=float, nargs="+", default=[DEFAULT_SETTLE, 1.0])
    args = parser.parse_args(argv)
    rows = [("settle_seconds", "files", "p50 s", "p95 s", "max s", "target p95 <", "verdict")]
    for settle in args.settle:
        latencies = measure(args.files, settle)
        p95 = percentile(latencies, 95)
        rows.append((f"{settle:g}", str(len(latencies)), f"{percentile(latencies, 50):.2f}",
                     f"{p95:.2f}", f"{max(latencies):.2f}", f"{settle + 1:g}",
                     "PASS" if p95 < settle + 1 else "MISS"))
    print_table("Pick-up latency (close() -> POST /tasks arrives)", rows)
    return rows


if __name__ == "__main__":
    main()
