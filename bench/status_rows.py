"""How fast the operator commands answer on a big database (issue 5: under a second at 100k).

Builds a state database with N files (default 100,000: mostly done, some
failed, vanished, queued and indexing, three history lines each), then times
each command as an operator runs it: a fresh ``watcherd`` process, Python
start-up included, best of three runs.

    .venv/bin/python -m bench.status_rows [ROWS]
"""

from __future__ import annotations

import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from watcherd.state.states import State
from watcherd.state.store import Store

MIX = ((State.DONE, 0.90), (State.FAILED, 0.06), (State.VANISHED, 0.02),
       (State.QUEUED, 0.015), (State.INDEXING, 0.005))


def build(db: Path, inbox: Path, rows: int) -> str:
    """Fill ``db`` with ``rows`` files; returns one failed file's path for ``explain``."""
    rng = random.Random(5)
    store = Store(db).open()
    now = time.time()
    files, history = [], []
    for n in range(1, rows + 1):
        state = rng.choices([s for s, _ in MIX], [w for _, w in MIX])[0]
        at = now - (rows - n)
        path = f"{inbox}/clip-{n:06d}.mp4"
        dest = f"{inbox}/{'done' if state == State.DONE else 'failed'}/clip-{n:06d}.mp4"
        files.append((n, path, str(inbox), "idx", state, 10_000_000, n, f"{n:064x}", 1,
                      f"task{n}", f"video{n}", "ready", None,
                      "duration 2 s is below the minimum" if state == State.FAILED else None,
                      dest if state in (State.DONE, State.FAILED) else None, at - 60, at, at))
        history += [(n, at - 60, None, State.SETTLING, "found by scan"),
                    (n, at - 50, State.SETTLING, State.QUEUED, "unchanged for 5s"),
                    (n, at, State.QUEUED, state, "moved")]
    with store._write() as conn:  # bulk load: one transaction, no per-row logging
        conn.executemany(
            "INSERT INTO files (id, path, folder, index_id, state, size, mtime_ns, sha256, "
            "attempts, task_id, video_id, remote_status, outcome, reason, dest_path, "
            "discovered_at, finished_at, updated_at) VALUES "
            "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", files)
        conn.executemany("INSERT INTO history (file_id, at, from_state, to_state, detail) "
                         "VALUES (?,?,?,?,?)", history)
    store.close()
    return next(f[14] for f in files if f[4] == State.FAILED)


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
        failed = build(root / "state.db", inbox, rows)
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
