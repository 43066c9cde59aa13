"""What the daemon benches share: the fake API, a real watcherd process, clips, /proc readings.

The daemon runs exactly as in production (``python -m watcherd run``) against
``watcherd.simulator`` on 127.0.0.1, on real folders in a temp directory. CPU and
peak memory come from ``/proc/<pid>``, so they are the daemon's own, not the
bench's or the fake API's.
"""

from __future__ import annotations

import os
import shutil
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from watcherd.simulator.clips import make_video

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class Daemon:
    """One ``watcherd run`` on ``root/inbox…`` with the given settings."""

    def __init__(self, root: Path, base_url: str, key: str, folders: int = 1,
                 **settings: Any) -> None:
        self.root = root
        self.inboxes = [root / f"inbox{n}" for n in range(folders)]
        for inbox in self.inboxes:
            inbox.mkdir(parents=True, exist_ok=True)
        polling = settings.pop("polling", False)
        self.settings = {
            "api": {"base_url": base_url}, "state_db": str(root / "state.db"),
            "folders": [{"path": str(p), "index_id": "idx_test", "polling": polling}
                        for p in self.inboxes],
            # The figures in bench/README.md are the /tasks path's; a bench of the
            # multipart path says so with its own upload_method.
            "upload_method": "tasks",
            **settings,
        }
        self.env = {**os.environ, "TWELVELABS_API_KEY": key}
        self.log_path = root / "daemon.log"
        self.proc: subprocess.Popen | None = None

    @property
    def config_path(self) -> Path:
        return self.root / "config.yaml"

    def start(self) -> Daemon:
        self.config_path.write_text(yaml.safe_dump(self.settings))
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "watcherd", "run", "-c", str(self.config_path)],
                stdout=log, stderr=subprocess.STDOUT, env=self.env)
        until(lambda: "watcherd started" in self.log(), 60, "the daemon to start")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(60)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def cpu_seconds(self) -> float:
        """User + system CPU the daemon has used so far (all its threads)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def peak_rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmHWM")

    def __enter__(self) -> Daemon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def until(predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(every)
    raise TimeoutError(f"gave up after {timeout:.0f}s waiting for {what}")


def distinct_clips(folder: Path, count: int, seconds: float = 5.0) -> list[Path]:
    """``count`` valid MP4s with distinct content: one encode, then a unique ``free`` box each.

    Distinct bytes matter: identical copies would be deduplicated (one upload).
    """
    folder.mkdir(parents=True, exist_ok=True)
    base = make_video(folder / "base.mp4", seconds=seconds)
    data = base.read_bytes()
    clips = []
    for n in range(count):
        path = folder / f"clip-{n:05d}.mp4"
        payload = f"watcherd bench clip {n}".encode()
        path.write_bytes(data + struct.pack(">I", 8 + len(payload)) + b"free" + payload)
        clips.append(path)
    base.unlink()
    return clips


def drop(source: Path, inbox: Path) -> float:
    """Move a finished file into ``inbox`` as a user's ``mv`` would; returns when (wall)."""
    target = inbox / source.name
    shutil.move(source, target)
    return time.time()


def percentile(values: list[float], p: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(p) - 1]


def print_table(title: str, rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print(f"\n{title}")
    for n, row in enumerate(rows):
        print("  " + "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                               for i, (cell, w) in enumerate(zip(row, widths, strict=True))))
        if n == 0:
            print("  " + "  ".join("-" * w for w in widths))
