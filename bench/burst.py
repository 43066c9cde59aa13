"""Burst: many small valid videos dropped at once, with watcherd's default settings.

Times until every file is uploaded and until every file is done (moved with
its sidecar), the daemon's peak RSS and CPU per file, and checks, not
assumes, that nothing was lost and nothing was uploaded twice: every file is
in done/ with a sidecar, failed/ and the inbox are empty, and the fake API
holds exactly one task per file name.

    .venv/bin/python -m bench.burst [--files 1000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench.harness import Daemon, distinct_clips, drop, print_table, until
from watcherd.simulator import FakeTwelveLabs


def run(files: int) -> dict[str, float | int]:
    with tempfile.TemporaryDirectory() as tmp, FakeTwelveLabs() as fake:
        root = Path(tmp)
        clips = distinct_clips(root / "staging", files)
        with Daemon(root, fake.base_url, fake.api_key) as daemon:
            inbox = daemon.inboxes[0]
            cpu_before = daemon.cpu_seconds()
            started = time.time()
            for clip in clips:
                drop(clip, inbox)
            until(lambda: len(fake.uploads()) >= files, 60 + files, "every upload", every=0.2)
            uploaded = time.time() - started
            until(lambda: _sidecars(inbox / "done") >= files, 120 + files, "every file done",
                  every=0.2)
            done = time.time() - started
            cpu = daemon.cpu_seconds() - cpu_before
            rss = daemon.peak_rss_mib()
        names = Counter(task["filename"] for task in fake.tasks.values())
        return {
            "files": files, "uploaded_s": uploaded, "done_s": done, "peak_rss_mib": rss,
            "cpu_ms_per_file": 1000 * cpu / files,
            "lost": files - _sidecars(inbox / "done"),
            "failed": len(list((inbox / "failed").glob("*.mp4"))),
            "left_in_inbox": len(list(inbox.glob("*.mp4"))),
            "duplicate_tasks": sum(n - 1 for n in names.values()) + (len(names) != files),
        }


def _sidecars(done: Path) -> int:
    return len(list(done.glob("*.mp4.json"))) if done.exists() else 0


def main(argv: list[str] | None = None) -> dict[str, float | int]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    args = parser.parse_args(argv)
    result = run(args.files)
    ok = not (result["lost"] or result["failed"] or result["left_in_inbox"]
              or result["duplicate_tasks"])
    print_table(f"Burst of {args.files} small videos (default settings: settle 5 s, poll 10 s, "
                "1 upload worker)", [
        ("all uploaded s", "all done s", "peak RSS MiB", "CPU ms/file", "lost", "failed",
         "left", "dup tasks", "verdict"),
        (f"{result['uploaded_s']:.1f}", f"{result['done_s']:.1f}",
         f"{result['peak_rss_mib']:.0f}", f"{result['cpu_ms_per_file']:.1f}",
         str(result["lost"]), str(result["failed"]), str(result["left_in_inbox"]),
         str(result["duplicate_tasks"]), "PASS" if ok else "MISS")])
    return result


if __name__ == "__main__":
    main()
