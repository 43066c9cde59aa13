"""API economy: requests watcherd makes per file over its life, by kind.

Files are dropped together and indexed by the fake API in 60 s (validating,
pending, indexing, then ready), with the default poll interval (10 s, ±20 %).
Every request the fake receives is counted and classified; start-up checks
are reported apart since they are per run, not per file. Run twice: polling
each task with its own GET (before), and batched per index (after).

    .venv/bin/python -m bench.api_economy [--files 10] [--indexing 60]
"""

from __future__ import annotations

import argparse
import re
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from bench.harness import Daemon, distinct_clips, drop, print_table, until
from watcherd.simulator import FakeTwelveLabs

KINDS = (
    ("POST", re.compile(r"/tasks$"), "create task (upload)"),
    ("GET", re.compile(r"/tasks/[^/]+$"), "poll one task"),
    ("GET", re.compile(r"/tasks$"), "list tasks"),
    ("GET", re.compile(r"/indexes/[^/]+/videos$"), "list videos (dedupe check)"),
    ("GET", re.compile(r"/indexes/[^/]+$"), "index check"),
)


def kind(method: str, path: str) -> str:
    for want, pattern, name in KINDS:
        if method == want and pattern.search(path):
            return name
    return f"{method} {path}"


def run(files: int, indexing: float, **settings: Any) -> tuple[Counter, Counter]:
    """(requests during start-up, requests after) by kind."""
    progression = (("validating", 0.0), ("pending", 2.0), ("indexing", 5.0),
                   ("ready", indexing))
    with tempfile.TemporaryDirectory() as tmp, FakeTwelveLabs(progression=progression) as fake:
        root = Path(tmp)
        clips = distinct_clips(root / "staging", files)
        with Daemon(root, fake.base_url, fake.api_key, **settings) as daemon:
            at_start = len(fake.requests)
            for clip in clips:
                drop(clip, daemon.inboxes[0])
            done = daemon.inboxes[0] / "done"
            until(lambda: len(list(done.glob("*.json"))) >= files if done.exists() else False,
                  indexing * 3 + 120, "every file done", every=0.5)
        requests = [kind(r.method, r.path) for r in fake.requests]
    return Counter(requests[:at_start]), Counter(requests[at_start:])


def main(argv: list[str] | None = None) -> dict[str, Counter]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--indexing", type=float, default=60.0)
    args = parser.parse_args(argv)
    lives: dict[str, Counter] = {}
    startups = []
    for label, batch in (("one GET per task (poll_batch: false)", False),
                         ("batched (poll_batch: true, default)", True)):
        startup, lives[label] = run(args.files, args.indexing, poll_batch=batch)
        startups.append(startup)
    kinds = sorted({k for life in lives.values() for k in life},
                   key=lambda k: -max(life[k] for life in lives.values()))
    rows = [("requests per file", *lives)]
    for name in kinds:
        rows.append((name, *(f"{life[name] / args.files:.1f}" for life in lives.values())))
    rows.append(("all", *(f"{sum(life.values()) / args.files:.1f}" for life in lives.values())))
    print_table(f"API requests over the life of {args.files} files dropped together, indexed "
                f"in {args.indexing:g} s (poll_interval_seconds 10)", rows)
    print("  start-up, once per run: " + ", ".join(f"{n} {k}" for k, n in startups[0].items()))
    return lives


if __name__ == "__main__":
    main()
