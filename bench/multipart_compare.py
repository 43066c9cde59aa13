"""Issue 16's figures: the multipart path against POST /tasks, through the real daemon.

Every run is a real ``watcherd run`` (``bench.harness.Daemon``) taking one valid video
(a short PyAV clip padded with a sparse ``free`` box, ``upload_compare.pad_video``) from
drop to done/ against the simulator on 127.0.0.1, once per path, side by side:

* ``speed``: 1 GiB through a simulator that reads each TCP connection's upload body at
  20 MB/s (``--throttle``), multipart with 4 chunk PUTs in flight against one POST /tasks.
  Upload time: the row's first ``uploading`` to its first ``indexing`` (its history).
  Target: multipart at least 3x faster.
* ``resume``: kill -9 once the simulator has read about 70 % of a 1 GiB upload, then
  start again: bytes sent again = upload bytes the simulator read in all, minus the
  file. Target: multipart <= (chunk_concurrency + 1) x chunk_size; /tasks for comparison.
* ``memory``: the daemon's peak RSS (VmHWM) with a 100 MiB and a 3.5 GiB multipart
  upload, and with a 100 MiB one through /tasks (which takes no more than 2 GiB); CPU
  seconds per GiB of the daemon during the upload beside curl's (``curl -F`` to the
  simulator's /tasks, through ``upload_compare``'s launcher). Targets: flat (3.5 GiB /
  100 MiB <= 1.2) and <= 1.5x the /tasks path's. The 3.5 GiB file must reach done/.

    .venv/bin/python -m bench.multipart_compare [--parts speed resume memory] [--quick]
    (--quick: 64 MiB files and 1 GiB for the big one, to check the bench still works)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.harness import Daemon, until
from bench.upload_compare import command, pad_video, spawn
from watcherd.simulator import FakeTwelveLabs
from watcherd.simulator.clips import make_video
from watcherd.state import queries
from watcherd.state.store import Store

GIB_MIB = 1024
THROTTLE = 20_000_000           # bytes per second per connection (the 20 MB/s)
RESUME_THROTTLE = 40_000_000    # slow enough to stop at 70 %, fast enough to finish soon
CHUNK_CONCURRENCY = 4
KILL_AT = 0.70
PATHS = ("multipart", "tasks")


class Run:
    """One daemon, one file, one path: drop it, follow its row, read the figures."""

    def __init__(self, root: Path, fake: FakeTwelveLabs, method: str) -> None:
        self.fake = fake
        self.daemon = Daemon(root, fake.base_url, fake.api_key, upload_method=method,
                             chunk_concurrency=CHUNK_CONCURRENCY, settle_seconds=0.5,
                             poll_interval_seconds=0.2, log_level="info")
        self.store: Store | None = None
        self.path: Path | None = None

    def start(self) -> Run:
        self.daemon.start()
        return self

    def drop(self, source: Path) -> None:
        self.path = self.daemon.inboxes[0] / source.name
        os.rename(source, self.path)

    def row(self) -> Any:
        if self.store is None:
            self.store = Store(Path(self.daemon.settings["state_db"]), readonly=True).open()
        assert self.path is not None
        rows = queries.records_for_path(self.store, str(self.path))
        return rows[-1] if rows else None

    def wait_state(self, state: str, timeout: float) -> Any:
        return until(lambda: (r := self.row()) is not None and r.state == state and r,
                     timeout, f"{self.path} {state}\n{self.daemon.log()[-3000:]}", every=0.02)

    def done(self, timeout: float) -> Path:
        assert self.path is not None
        moved = self.daemon.inboxes[0] / "done" / self.path.name
        until(lambda: moved.with_name(moved.name + ".json").exists(), timeout,
              f"{moved} done\n{self.daemon.log()[-3000:]}", every=0.1)
        return moved

    def upload_seconds(self) -> float:
        """First ``uploading`` to first ``indexing``, from the row's history."""
        row = self.row()
        assert self.store is not None
        history = self.store.history(row.id)
        began = min(h["at"] for h in history if h["to_state"] == "uploading")
        ended = min(h["at"] for h in history if h["to_state"] == "indexing")
        return ended - began

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
        self.daemon.stop()


def body_bytes(fake: FakeTwelveLabs, method: str) -> int:
    return fake.body_bytes["storage" if method == "multipart" else "tasks"]


def video(folder: Path, size_mib: int, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    base = folder / "base.mp4"
    if not base.exists():
        make_video(base, seconds=5.0)
    padded = pad_video(base, size_mib, folder)
    return padded.rename(folder / f"{name}-{size_mib}.mp4")


def fresh_fake(**controls: Any) -> FakeTwelveLabs:
    fake = FakeTwelveLabs()
    for name, value in controls.items():
        setattr(fake, name, value)
    return fake  # started by ``with``


# -- the three parts ---------------------------------------------------------------


def speed(scratch: Path, size_mib: int) -> dict[str, float]:
    seconds = {}
    for method in PATHS:
        with fresh_fake(throttle_bytes_per_second=THROTTLE) as fake:
            run = Run(scratch / f"speed-{method}", fake, method).start()
            try:
                run.drop(video(scratch / "media", size_mib, f"speed-{method}"))
                run.done(600)
                seconds[method] = run.upload_seconds()
            finally:
                run.close()
    print(f"\nspeed: {size_mib} MiB, simulator reading each connection at "
          f"{THROTTLE / 1e6:.0f} MB/s, chunk_concurrency {CHUNK_CONCURRENCY}")
    print(f"  {'path':<10} {'upload s':>9} {'MB/s':>7}")
    for method in PATHS:
        print(f"  {method:<10} {seconds[method]:>9.1f} "
              f"{(size_mib << 20) / seconds[method] / 1e6:>7.1f}")
    ratio = seconds["tasks"] / seconds["multipart"]
    print(f"  {'PASS' if ratio >= 3 else 'MISS'}  multipart {ratio:.2f}x faster than /tasks "
          "(target >= 3)")
    return {"speed_ratio": ratio, **{f"{m}_upload_s": s for m, s in seconds.items()}}


def resume(scratch: Path, size_mib: int) -> dict[str, float]:
    size = size_mib << 20
    again, chunk = {}, 0
    for method in PATHS:
        with fresh_fake(throttle_bytes_per_second=RESUME_THROTTLE) as fake:
            run = Run(scratch / f"resume-{method}", fake, method).start()
            try:
                run.drop(video(scratch / "media", size_mib, f"resume-{method}"))
                until(lambda f=fake, m=method: body_bytes(f, m) >= KILL_AT * size, 600,
                      f"{KILL_AT:.0%} sent", every=0.01)
                assert run.daemon.proc is not None
                os.kill(run.daemon.proc.pid, signal.SIGKILL)
                run.daemon.proc.wait()
                killed_at = body_bytes(fake, method) / size
                run.start()
                run.done(600)
                again[method] = body_bytes(fake, method) - size
                chunk = chunk or (run.row().chunk_size or 0)
                print(f"  {method}: killed at {killed_at:.0%} of the file")
            finally:
                run.close()
    bound = (CHUNK_CONCURRENCY + 1) * chunk
    print(f"\nresume: kill -9 at about {KILL_AT:.0%} of {size_mib} MiB, then a restart "
          f"(simulator at {RESUME_THROTTLE / 1e6:.0f} MB/s per connection)")
    print(f"  {'path':<10} {'sent again MiB':>15} {'of the file':>12}")
    for method in PATHS:
        print(f"  {method:<10} {again[method] / 2**20:>15.1f} {again[method] / size:>12.0%}")
    ok = again["multipart"] <= bound
    print(f"  {'PASS' if ok else 'MISS'}  multipart sent {again['multipart'] / 2**20:.1f} MiB "
          f"again <= (chunk_concurrency + 1) x chunk_size = {bound / 2**20:.1f} MiB")
    return {f"{m}_resent_mib": v / 2**20 for m, v in again.items()} | {"bound_mib": bound / 2**20}


def memory(scratch: Path, sizes: list[int], tasks_size: int) -> dict[str, float]:
    rows: list[tuple[str, int, float, float]] = []
    for method, size_mib in [*(("multipart", s) for s in sizes), ("tasks", tasks_size)]:
        with fresh_fake() as fake:
            run = Run(scratch / f"memory-{method}-{size_mib}", fake, method).start()
            try:
                run.drop(video(scratch / "media", size_mib, f"memory-{method}"))
                run.wait_state("uploading", 600)
                cpu = run.daemon.cpu_seconds()
                run.wait_state("indexing", 3600)
                cpu = run.daemon.cpu_seconds() - cpu
                moved = run.done(600)
                rows.append((method, size_mib, run.daemon.peak_rss_mib(),
                             cpu / (size_mib / GIB_MIB)))
                assert sidecar_method(moved) == method, moved
                moved.unlink()
            finally:
                run.close()
    curl = {size: curl_cpu_per_gib(scratch, size) for size in sorted({*sizes, tasks_size})}
    print("\nmemory: the daemon's peak RSS (VmHWM) over the whole run, CPU s/GiB of the "
          "daemon from 'uploading' to 'indexing'; curl -F to the simulator's /tasks")
    print(f"  {'path':<10} {'size MiB':>8} {'peak RSS MiB':>12} {'CPU s/GiB':>9} "
          f"{'curl CPU s/GiB':>14}")
    for method, size_mib, rss, cpu in rows:
        print(f"  {method:<10} {size_mib:>8} {rss:>12.1f} {cpu:>9.2f} {curl[size_mib]:>14.2f}")
    by = {(m, s): rss for m, s, rss, _ in rows}
    flat = by["multipart", max(sizes)] / by["multipart", min(sizes)]
    vs_tasks = by["multipart", max(sizes)] / by["tasks", tasks_size]
    print(f"  {'PASS' if flat <= 1.2 else 'MISS'}  flat: {max(sizes)} MiB / {min(sizes)} MiB "
          f"= {flat:.2f} (target <= 1.2)")
    print(f"  {'PASS' if vs_tasks <= 1.5 else 'MISS'}  multipart at {max(sizes)} MiB / /tasks "
          f"at {tasks_size} MiB = {vs_tasks:.2f} (target <= 1.5)")
    print(f"  the {max(sizes)} MiB file went from drop to done/ through multipart")
    return {"rss_flat": flat, "rss_vs_tasks": vs_tasks}


def curl_cpu_per_gib(scratch: Path, size_mib: int) -> float:
    """``curl -F`` of a file this size to the simulator's /tasks: the CPU a plain
    streaming client spends per GiB (through upload_compare's launcher)."""
    work = scratch / "curl"
    work.mkdir(exist_ok=True)
    path = video(work, size_mib, "curl")
    try:
        with fresh_fake() as fake:
            usage, _, stderr = spawn(command("curl", Path(), fake, path), work, 3600)
        if usage["exit"] != 0:
            raise RuntimeError(f"curl exited {usage['exit']}: {stderr[-500:]}")
        return usage["cpu"] / (size_mib / GIB_MIB)
    finally:
        path.unlink()


def sidecar_method(moved: Path) -> str | None:
    return json.loads(moved.with_name(moved.name + ".json").read_text()).get("upload_method")

PARTS: dict[str, Callable[[Path, argparse.Namespace], dict[str, float]]] = {
    "speed": lambda scratch, a: speed(scratch, a.size),
    "resume": lambda scratch, a: resume(scratch, a.size),
    "memory": lambda scratch, a: memory(scratch, [a.small, a.big], a.small),
}


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", choices=list(PARTS), default=list(PARTS))
    parser.add_argument("--size", type=int, default=GIB_MIB, help="MiB for speed and resume")
    parser.add_argument("--small", type=int, default=100, help="MiB, memory's small file")
    parser.add_argument("--big", type=int, default=3584, help="MiB, memory's big file")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.small, args.big = 64, 64, 1024
    if shutil.which("curl") is None:
        raise SystemExit("curl is not installed")
    figures: dict[str, float] = {}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-multipart-") as tmp:
        for part in args.parts:
            figures |= PARTS[part](Path(tmp), args)
    print(f"\n(multipart_compare: {time.monotonic() - started:.0f} s)")
    return figures


if __name__ == "__main__":
    main()
