"""Start-up with 10,000 files already waiting: time until all are discovered and settled.

The files are hard links to one small valid video (cheap to make; settling
does not read content). Uploads are held back on purpose: the fake API
answers the first POST with 429 and ``Retry-After: 3600``, so every other file
stays queued and the figure is discovery plus settling alone. Progress is
read from the state database, read-only, as ``watcherd status`` would.

``--steady S`` then keeps the daemon running S more seconds with every file
tracked (queued) and reports its CPU over them and its RSS growth: the cost of
rescans of tracked files, every ``--rescan-interval`` seconds.

    .venv/bin/python -m bench.startup_scale [--files 10000] [--rescan-interval 2 --steady 30]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import time
from pathlib import Path

from bench.harness import Daemon, print_table, until
from watcherd.simulator import FakeTwelveLabs
from watcherd.simulator.clips import make_video


def counts(db: Path) -> tuple[int, int]:
    """(rows, rows still settling)."""
    if not db.exists():
        return 0, 0
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows, settling = conn.execute(
            "SELECT COUNT(*), SUM(state = 'settling') FROM files").fetchone()
    return rows, settling or 0


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def run(files: int, rescan_interval: float | None = None,
        steady: float = 0.0) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp, FakeTwelveLabs() as fake:
        root = Path(tmp)
        fake.inject("POST", "/tasks", status=429, headers={"Retry-After": "3600"},
                    body={"code": "too_many_requests", "message": "slow down"}, times=10**6)
        settings = {} if rescan_interval is None else {"rescan_interval_seconds": rescan_interval}
        daemon = Daemon(root, fake.base_url, fake.api_key, **settings)
        clip = make_video(root / "one.mp4")
        for n in range(files):
            os.link(clip, daemon.inboxes[0] / f"waiting-{n:05d}.mp4")
        db = root / "state.db"
        started = time.monotonic()
        with daemon:
            until(lambda: counts(db)[0] >= files, 600, "every file discovered", every=0.2)
            discovered = time.monotonic() - started
            until(lambda: counts(db)[1] == 0, 600, "every file settled", every=0.2)
            settled = time.monotonic() - started
            result = {"discovered_s": discovered, "settled_s": settled,
                      "cpu_s": daemon.cpu_seconds(), "peak_rss_mib": daemon.peak_rss_mib()}
            if steady > 0:
                assert daemon.proc is not None
                cpu, rss = daemon.cpu_seconds(), rss_mib(daemon.proc.pid)
                time.sleep(steady)
                result["steady_cpu_pct"] = (daemon.cpu_seconds() - cpu) / steady * 100
                result["steady_rss_growth_mib"] = rss_mib(daemon.proc.pid) - rss
            return result


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--rescan-interval", type=float, help="rescan_interval_seconds")
    parser.add_argument("--steady", type=float, default=0.0, metavar="S",
                        help="then measure S seconds with every file tracked")
    args = parser.parse_args(argv)
    result = run(args.files, args.rescan_interval, args.steady)
    print_table(f"Start-up with {args.files:,} files waiting (settle_seconds 5, from process "
                "start)", [
        ("all discovered s", "all settled s", "daemon CPU s", "peak RSS MiB"),
        (f"{result['discovered_s']:.1f}", f"{result['settled_s']:.1f}",
         f"{result['cpu_s']:.1f}", f"{result['peak_rss_mib']:.0f}")])
    if args.steady > 0:
        print_table(f"Then {args.steady:g} s with all {args.files:,} tracked, rescan every "
                    f"{args.rescan_interval or 'default'} s", [
            ("daemon CPU % of one core", "RSS growth MiB"),
            (f"{result['steady_cpu_pct']:.1f}", f"{result['steady_rss_growth_mib']:.0f}")])
    return result


if __name__ == "__main__":
    main()
