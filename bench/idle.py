"""Idle cost: the daemon's CPU over a quiet minute, watching three folders.

With inotify the kernel wakes the daemon only for events, so idle CPU should
be about zero; what remains is the threads' one-second housekeeping turns.
With polling (``folders[].polling: true``, for NFS/SMB) watchdog lists and
stats every file of every folder each interval: 3 folders of 1,000 files
here (ignored non-video files, so nothing is uploaded).

    .venv/bin/python -m bench.idle [--seconds 60]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.harness import Daemon, print_table
from watcherd.simulator import FakeTwelveLabs

FOLDERS = 3
FILES_PER_POLLED_FOLDER = 1000


def idle_cpu(seconds: float, polling: bool) -> tuple[float, float]:
    """(CPU seconds over ``seconds`` of idling, peak RSS MiB)."""
    with tempfile.TemporaryDirectory() as tmp, FakeTwelveLabs() as fake:
        root = Path(tmp)
        daemon = Daemon(root, fake.base_url, fake.api_key, folders=FOLDERS, polling=polling)
        if polling:
            for inbox in daemon.inboxes:
                for n in range(FILES_PER_POLLED_FOLDER):
                    (inbox / f"still-{n:04d}.jpg").write_bytes(b"x")
        with daemon:
            time.sleep(5)  # the start-up scan and first polls are not idling
            before = daemon.cpu_seconds()
            time.sleep(seconds)
            return daemon.cpu_seconds() - before, daemon.peak_rss_mib()


def main(argv: list[str] | None = None) -> list[tuple[str, ...]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args(argv)
    rows = [("folders", "CPU s", "CPU % of one core", "peak RSS MiB")]
    for polling, label in ((False, f"{FOLDERS} inotify, empty"),
                           (True, f"{FOLDERS} polling, {FILES_PER_POLLED_FOLDER} files each")):
        cpu, rss = idle_cpu(args.seconds, polling)
        rows.append((label, f"{cpu:.2f}", f"{100 * cpu / args.seconds:.2f}", f"{rss:.0f}"))
    print_table(f"Idle cost over {args.seconds:g} s", rows)
    return rows


if __name__ == "__main__":
    main()
