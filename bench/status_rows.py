"""How fast the operator commands answer on a big database (issue 5: under a second at 100k).

Builds a state database with N files (default 100,000: mostly done, some
failed, vanished, queued and indexing, three history lines each), then times
each command as an operator runs it: a fresh ``watcherd`` process, Python
start-up included, best of three runs.

    .venv/bin/python -m bench.status_rows [ROWS]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.bigdb import build


def best_of(command: list[str], runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        # retry exits 1 here (the bench has no real files to move): time it anyway.
        subprocess.run(command, check=False, capture_output=True)
        times.append(time.perf_counter() - started)
    return min(times)


def main(argv: list[str]) -> None:
    rows = int(argv[0]) if argv else 100_000
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        inbox = root / "inbox"
        inbox.mkdir()
        config = root / "config.yaml"
        config.write_text(f"state_db: {root / 'state.db'}\n"
                          f"folders:\n  - {{path: {inbox}, index_id: idx}}\n")
        started = time.perf_counter()
        failed = build(root / "state.db", inbox, rows, history_per_file=3)
        print(f"built {rows:,} rows in {time.perf_counter() - started:.1f}s "
              f"({(root / 'state.db').stat().st_size / 2**20:.0f} MiB)")
        watcherd = [sys.executable, "-m", "watcherd"]
        baseline = best_of([sys.executable, "-c", "import watcherd.cli.main"])
        print(f"\n{'command':<44} {'seconds':>8}")
        print(f"{'(python start + import watcherd.cli.main)':<44} {baseline:>8.3f}")
        for args in (["status"], ["status", "--json"], ["explain", failed],
                     ["retry", "--failed", "--dry-run", "--json"]):
            seconds = best_of([*watcherd, *args, "-c", str(config)])
            print(f"{'watcherd ' + ' '.join(a if a != failed else 'FAILED.mp4' for a in args):<44}"
                  f" {seconds:>8.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])
