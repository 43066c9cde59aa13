"""What history costs: the daemon and the operator commands at N finished files vs none.

For an empty database and for one with ``--rows`` files (default 1,000,000,
7 history lines each, built by ``bench.bigdb``), a real ``watcherd run``:
start-up to "watcherd started" (the first start after the build, which also
runs the integrity check a crash would, and a restart after a clean stop),
its CPU over ``--seconds`` idle, then ``status``, ``status --json`` and
``list --json`` as an operator runs them while it idles (a fresh process each,
wall time and peak RSS from ``wait4``), and how soon ``list --json`` prints
its first line.

    .venv/bin/python -m bench.history [--rows 1000000] [--seconds 30]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.bigdb import FINISHED_ONLY, build
from bench.harness import Daemon, print_table
from bench.upload_compare import spawn
from watcherd.simulator import FakeTwelveLabs


def started_in(daemon: Daemon) -> float:
    daemon.log_path.unlink(missing_ok=True)  # "watcherd started" must be this start's
    began = time.monotonic()
    daemon.start()
    return time.monotonic() - began


def first_line_in(argv: list[str]) -> float:
    began = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    proc.stdout.readline()
    seconds = time.monotonic() - began
    proc.kill()
    proc.wait()
    return seconds


def measure(rows: int, seconds: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp, FakeTwelveLabs() as fake:
        root = Path(tmp)
        daemon = Daemon(root, fake.base_url, fake.api_key)
        if rows:
            build(root / "state.db", daemon.inboxes[0], rows, mix=FINISHED_ONLY,
                  history_per_file=7)
        result = {"first_start_s": started_in(daemon)}
        time.sleep(2)
        daemon.stop()
        result["restart_s"] = started_in(daemon)
        try:
            time.sleep(5)  # the start-up scan is not idling
            before = daemon.cpu_seconds()
            time.sleep(seconds)
            result["idle_cpu_pct"] = 100 * (daemon.cpu_seconds() - before) / seconds
            watcherd = [sys.executable, "-m", "watcherd"]
            config = ["-c", str(daemon.config_path)]
            for name, args in (("status", ["status"]), ("status_json", ["status", "--json"]),
                               ("list_json", ["list", "--json"])):
                usage, _, _ = spawn([*watcherd, *args, *config], root, 1800)
                result[f"{name}_s"] = usage["wall"]
                result[f"{name}_mib"] = usage["maxrss_kib"] / 1024
            result["list_first_s"] = first_line_in([*watcherd, "list", "--json", *config])
        finally:
            daemon.stop()
        return result


def main(argv: list[str] | None = None) -> list[dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=30)
    args = parser.parse_args(argv)
    results = [measure(0, args.seconds), measure(args.rows, args.seconds)]
    table = [("finished files", "first start s", "restart s", "idle CPU %", "status s",
              "status --json s", "list --json s", "list --json MiB", "first line s")]
    for rows, r in zip((0, args.rows), results, strict=True):
        table.append((f"{rows:,}", f"{r['first_start_s']:.2f}", f"{r['restart_s']:.2f}",
                      f"{r['idle_cpu_pct']:.2f}", f"{r['status_s']:.2f}",
                      f"{r['status_json_s']:.2f}", f"{r['list_json_s']:.1f}",
                      f"{r['list_json_mib']:.0f}", f"{r['list_first_s']:.2f}"))
    empty, full = results
    print_table(f"History cost (idle over {args.seconds:g} s; start-up to 'watcherd started')",
                table)
    print(f"\n  idle CPU ratio {full['idle_cpu_pct'] / max(empty['idle_cpu_pct'], 1e-9):.2f}x "
          f"(target <= 1.5); restart +{full['restart_s'] - empty['restart_s']:.2f} s "
          f"(target <= 0.2); status {full['status_s']:.2f} s (target < 0.5); list --json "
          f"peak {full['list_json_mib']:.0f} MiB (target < 100)")
    return results


if __name__ == "__main__":
    main()
