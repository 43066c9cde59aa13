"""Several hosts: three coordinated daemons against one, when uploads are the bottleneck.

The fake API reads every upload body at a fixed rate per connection (its
``slow_read`` fault on every POST /tasks: each host's uplink), so one daemon
with one upload worker is upload-bound. The same files (one clip copied under
``--files`` names, dedupe off so each is uploaded) are ingested by one
coordinated daemon, then by three sharing the folder, each on a fresh
PostgreSQL schema. Prints the time to get every file done, the throughput
ratio, and what the claims cost per file: PostgreSQL statements (round trips)
and milliseconds, as each daemon logs them when it stops. Checks, not assumes,
that every file was uploaded once and is in done/ with its sidecar.

Needs the PostgreSQL server of the cluster tests (``WATCHERD_TEST_PG_DSN``,
default postgresql://postgres@127.0.0.1:5432/test; ``.ci/postgres`` starts it).

    .venv/bin/python -m bench.cluster [--files 60] [--upload-seconds 0.5]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

from bench.harness import Daemon, print_table, until
from watcherd.simulator import FakeTwelveLabs
from watcherd.simulator.clips import make_video

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"
STATS = re.compile(r"PostgreSQL this run: (\d+) statements in (\d+) ms")


def run(hosts: int, files: int, upload_seconds: float, dsn: str, clip: Path) -> dict:
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with tempfile.TemporaryDirectory() as tmp, FakeTwelveLabs() as fake:
        root = Path(tmp)
        per_mib = upload_seconds / (clip.stat().st_size / (1 << 20))
        fake.inject("POST", "/tasks", action="slow_read", delay=per_mib, times=10 * files)
        share = root / "share"
        share.mkdir()
        (root / "dsn").write_text(dsn)
        daemons: list[Daemon] = []
        try:
            seconds = _ingest(daemons, hosts, files, upload_seconds, root, fake.base_url,
                              fake.api_key, schema, clip)
        finally:
            for daemon in daemons:
                daemon.stop()
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        statements = milliseconds = 0
        for daemon in daemons:
            found = STATS.search(daemon.log())
            if found:
                statements += int(found.group(1))
                milliseconds += int(found.group(2))
        tasks = Counter(task["filename"] for task in fake.tasks.values())
        done = share / "done"
        return {"hosts": hosts, "seconds": seconds, "files_per_s": files / seconds,
                "statements_per_file": statements / files, "ms_per_file": milliseconds / files,
                "duplicates": sum(n - 1 for n in tasks.values()),
                "lost": files - len(list(done.glob("*.json")))}


def _ingest(daemons: list[Daemon], hosts: int, files: int, upload_seconds: float, root: Path,
            base_url: str, key: str, schema: str, clip: Path) -> float:
    """Start the hosts, drop the files, wait until all are done: the seconds it took."""
    share = root / "share"
    for n in range(hosts):
        daemon = Daemon(root / f"host{n}", base_url, key,
                        settle_seconds=0.5, rescan_interval_seconds=0.5,
                        poll_interval_seconds=0.2, upload_workers=1, log_level="info",
                        upload_method="tasks",  # the throttled path: one POST per file
                        coordination={"dsn_file": str(root / "dsn"), "host_name": f"h{n}",
                                      "schema": schema, "lease_seconds": 10})
        daemon.settings["folders"] = [{"path": str(share), "index_id": "idx_test",
                                       "polling": True, "dedupe": False}]
        daemons.append(daemon.start())
    names = [f"clip-{n:03d}.mp4" for n in range(files)]
    started = time.monotonic()
    for name in names:
        shutil.copyfile(clip, share / f".{name}")
        os.rename(share / f".{name}", share / name)
    done = share / "done"
    until(lambda: done.is_dir() and len(list(done.glob("*.json"))) >= files,
          120 + files * upload_seconds * 2, "every file done", every=0.1)
    return time.monotonic() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster")
    parser.add_argument("--files", type=int, default=60)
    parser.add_argument("--upload-seconds", type=float, default=0.5,
                        help="how long each upload takes through the throttled connection")
    args = parser.parse_args(argv)
    dsn = os.environ.get("WATCHERD_TEST_PG_DSN", DEFAULT_DSN)
    with tempfile.TemporaryDirectory() as tmp:
        clip = make_video(Path(tmp) / "clip.mp4")
        one = run(1, args.files, args.upload_seconds, dsn, clip)
        three = run(3, args.files, args.upload_seconds, dsn, clip)
    rows = [(str(r["hosts"]), f"{r['seconds']:.1f}", f"{r['files_per_s']:.2f}",
             f"{r['statements_per_file']:.1f}", f"{r['ms_per_file']:.1f}",
             str(r["duplicates"]), str(r["lost"])) for r in (one, three)]
    print_table(f"{args.files} files, each upload {args.upload_seconds:g} s on its connection "
                "(upload-bound), 1 upload worker per host",
                [("hosts", "all done (s)", "files/s", "PG statements/file",
                  "PG ms/file", "duplicate tasks", "lost"), *rows])
    print(f"throughput, three hosts / one: {one['seconds'] / three['seconds']:.2f}x")


if __name__ == "__main__":
    main()
