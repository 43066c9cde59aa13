"""watcherd's upload against curl into a sink faster than both: curl is the ceiling.

``upload_compare`` uploads into the simulator, which parses every body in Python and so
limits all uploaders alike. Here the server is ``watcherd.simulator.sink.FastSink``: it
reads exactly Content-Length bytes into one buffer and drops them, so what is measured
is the uploader's own cost. Each upload runs in a fresh child under the same launcher
as ``upload_compare`` (wall, CPU and peak RSS from ``os.wait4``); the tools alternate.

``--before DIR`` adds a third uploader, ``before``: the same watcherd child with
``DIR`` (a checkout of an older commit, e.g. ``git worktree add /tmp/before eff458b``)
first on ``sys.path`` - the old client with requests-toolbelt's ``MultipartEncoder``,
which must then be importable (``--before-site`` adds a directory holding it, e.g.
``pip install --target /tmp/tb requests-toolbelt==1.0.0``).

    .venv/bin/python -m bench.upload_sink [--sizes MIB ...] [--rounds N] [--before DIR]
    (default: --sizes 1024 --rounds 5)
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.upload_compare import INDEX, WATCHERD_CHILD, parse_output, spawn
from watcherd.simulator.sink import FastSink

# Start-up alone (imports, no upload): subtracted to give the upload's own CPU.
WATCHERD_IDLE_CHILD = "import sys, watcherd.twelvelabs.client\nassert len(sys.argv) == 1"

CURL_CPU_FACTOR = 1.5    # target: CPU per GiB at most this times curl's
CURL_SPEED_FACTOR = 0.9  # target: throughput at least this times curl's


@dataclass
class Run:
    tool: str
    size_mib: int
    request_s: float  # the request alone, as the child timed it
    cpu_s: float      # the child's user + system


def make_file(folder: Path, size_mib: int) -> Path:
    """Random bytes (not a sparse hole), so reading costs what a real file's does."""
    path = folder / f"upload-{size_mib}.bin"
    block = os.urandom(1 << 20)
    with open(path, "wb") as fh:
        for _ in range(size_mib):
            fh.write(block)
    return path


def argv_for(tool: str, sink: FastSink, path: Path, code: str) -> list[str]:
    if tool == "curl":
        return ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{time_total}",
                "-H", "x-api-key: k", "-F", f"index_id={INDEX}",
                "-F", f"video_file=@{path}", f"{sink.base_url}/tasks"]
    return [sys.executable, "-c", code, sink.base_url, "k", str(path), INDEX]


def child_code(tool: str, before: Path | None, before_site: Path | None) -> str:
    """The watcherd child; for ``before``, with the old checkout first on sys.path (not
    PYTHONPATH: ``-c`` puts the working directory, this checkout, ahead of it)."""
    if tool != "before" or before is None:
        return WATCHERD_CHILD
    paths = [str(before)] + ([str(before_site)] if before_site else [])
    return f"import sys; sys.path[:0] = {paths!r}\n" + WATCHERD_CHILD


def one(tool: str, sink: FastSink, path: Path, size_mib: int, scratch: Path,
        code: str) -> Run:
    before = len(sink.requests)
    usage, stdout, stderr = spawn(argv_for(tool, sink, path, code), scratch, 120 + size_mib / 5)
    if usage["exit"] != 0:
        raise RuntimeError(f"{tool} exited {usage['exit']}:\n{stderr[-3000:]}")
    _, seconds = parse_output("curl" if tool == "curl" else "watcherd", stdout)
    if len(sink.requests) != before + 1 or sink.requests[-1].body_bytes < path.stat().st_size:
        raise AssertionError(f"{tool}: the sink did not get one whole body")
    return Run(tool, size_mib, seconds, usage["cpu"])


def startup_cpu(scratch: Path, code: str, rounds: int = 3) -> float:
    """Median CPU of a Python child that only imports what the uploader imports."""
    idle = code.replace(WATCHERD_CHILD, WATCHERD_IDLE_CHILD)
    return statistics.median(spawn([sys.executable, "-c", idle], scratch, 60)[0]["cpu"]
                             for _ in range(rounds))


def report(runs: list[Run], tools: list[str], sizes: list[int],
           startup: dict[str, float]) -> bool:
    print("medians. req MiB/s: the request alone; CPU s/GiB: the whole child, and net of "
          "Python start-up and imports (measured alone) for the Python uploaders")
    print(f"{'size MiB':>8}  {'tool':<8} {'req MiB/s':>9} {'CPU s/GiB':>9} {'net CPU s/GiB':>13}"
          f" {'thr. / curl':>11} {'net CPU / curl':>14}")
    ok = True
    for size in sizes:
        gib = size / 1024

        def med(tool: str, value: str, z: int = size) -> float:
            return statistics.median(getattr(r, value) for r in runs
                                     if r.tool == tool and r.size_mib == z)
        curl_speed = size / med("curl", "request_s")
        curl_cpu = med("curl", "cpu_s") / gib
        for tool in tools:
            speed = size / med(tool, "request_s")
            cpu = med(tool, "cpu_s") / gib
            net = (med(tool, "cpu_s") - startup.get(tool, 0.0)) / gib
            print(f"{size:>8}  {tool:<8} {speed:>9.0f} {cpu:>9.2f} {net:>13.2f} "
                  f"{speed / curl_speed:>11.2f} {net / curl_cpu:>14.2f}")
            if tool == "watcherd":
                ok &= speed >= CURL_SPEED_FACTOR * curl_speed and net <= CURL_CPU_FACTOR * curl_cpu
    print(f"\ntarget: watcherd >= {CURL_SPEED_FACTOR}x curl's throughput and <= "
          f"{CURL_CPU_FACTOR}x curl's CPU per GiB: {'PASS' if ok else 'MISS'}")
    return ok


def main(argv: list[str] | None = None) -> bool:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", metavar="MIB", default=[1024])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--before", type=Path, help="a checkout of the code to compare with")
    parser.add_argument("--before-site", type=Path, help="extra sys.path entry for --before")
    args = parser.parse_args(argv)
    if shutil.which("curl") is None:
        raise SystemExit("curl is not installed")
    tools = ["watcherd", "curl"] + (["before"] if args.before else [])
    codes = {t: child_code(t, args.before, args.before_site) for t in tools}
    runs: list[Run] = []
    with tempfile.TemporaryDirectory() as tmp, FastSink() as sink:
        scratch = Path(tmp)
        files = {size: make_file(scratch, size) for size in args.sizes}
        startup = {t: startup_cpu(scratch, codes[t]) for t in tools if t != "curl"}
        for tool in tools:  # warm-up: page cache, imports
            one(tool, sink, files[min(args.sizes)], min(args.sizes), scratch, codes[tool])
        for r in range(args.rounds):
            order = tools[r % len(tools):] + tools[:r % len(tools)]
            for size in args.sizes:
                for tool in order:
                    runs.append(one(tool, sink, files[size], size, scratch, codes[tool]))
    print(f"FastSink on 127.0.0.1, {os.cpu_count()} CPUs, {args.rounds} rounds, random-content "
          f"files; start-up CPU: " + ", ".join(f"{t} {s:.3f} s" for t, s in startup.items()))
    return report(runs, tools, sorted(set(args.sizes)), startup)


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
