"""A state database with many files, built fast, for the benches that need history.

One transaction, ``executemany`` over generators (no list of a million tuples
in memory), the schema from ``Store.open`` so indexes and counters are the
daemon's own. Rows are mostly done (a realistic mix of failed, vanished,
queued and indexing), each with ``history_per_file`` history lines (a real
file has about 7), finished over the last ``days`` days, newest last.

    .venv/bin/python -m bench.bigdb DB ROWS      # build one to poke at
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from watcherd.state.states import State
from watcherd.state.store import Store

MIX = ((State.DONE, 0.90), (State.FAILED, 0.06), (State.VANISHED, 0.02),
       (State.QUEUED, 0.015), (State.INDEXING, 0.005))
FINISHED_ONLY = ((State.DONE, 0.93), (State.FAILED, 0.05), (State.VANISHED, 0.02))
HISTORY_STEPS = ((State.SETTLING, State.QUEUED, "unchanged for 5s"),
                 (State.QUEUED, State.VALIDATING, "picked up"),
                 (State.VALIDATING, State.UPLOADING, "valid"),
                 (State.UPLOADING, State.INDEXING, "task created"),
                 (State.INDEXING, State.FINALIZING, "ready"))


def build(db: Path, inbox: Path, rows: int, *, mix: tuple = MIX, history_per_file: int = 3,
          days: float = 30.0, now: float | None = None) -> str:
    """Fill ``db`` with ``rows`` files; returns one failed file's path (for ``explain``)."""
    now = time.time() if now is None else now
    states = _states(rows, mix)
    store = Store(db).open()
    step = days * 86400 / max(rows, 1)
    with store._write() as conn:  # bulk load: one transaction, no per-row logging
        conn.executemany(
            "INSERT INTO files (id, path, folder, index_id, state, size, mtime_ns, sha256, "
            "attempts, task_id, video_id, remote_status, outcome, reason, dest_path, "
            "discovered_at, finished_at, updated_at) VALUES "
            "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            _files(states, str(inbox), now, step))
        conn.executemany("INSERT INTO history (file_id, at, from_state, to_state, detail) "
                         "VALUES (?,?,?,?,?)", _history(states, now, step, history_per_file))
    store.close()
    first_failed = next((n for n, s in enumerate(states, 1) if s == State.FAILED), 1)
    return f"{inbox}/failed/clip-{first_failed:07d}.mp4"


def _states(rows: int, mix: tuple) -> list[str]:
    rng = random.Random(5)
    return rng.choices([s for s, _ in mix], [w for _, w in mix], k=rows)


def _files(states: list[str], inbox: str, now: float, step: float) -> Iterator[tuple]:
    rows = len(states)
    for n, state in enumerate(states, 1):
        at = now - (rows - n) * step
        finished = state in (State.DONE, State.FAILED, State.VANISHED)
        dest = None
        if state in (State.DONE, State.FAILED):
            dest = f"{inbox}/{'done' if state == State.DONE else 'failed'}/clip-{n:07d}.mp4"
        yield (n, f"{inbox}/clip-{n:07d}.mp4", inbox, "idx", state, 10_000_000, n,
               f"{n:064x}", 1, f"task{n}", f"video{n}", "ready",
               "ready" if state == State.DONE else None,
               "duration 2 s is below the minimum" if state == State.FAILED else None,
               dest, at - 60, at if finished else None, at)


def _history(states: list[str], now: float, step: float, per_file: int) -> Iterator[tuple]:
    rows = len(states)
    for n, state in enumerate(states, 1):
        at = now - (rows - n) * step
        yield (n, at - 60, None, State.SETTLING, "found by scan")
        for i in range(max(per_file - 2, 0)):
            old, new, why = HISTORY_STEPS[i % len(HISTORY_STEPS)]
            yield (n, at - 50 + i, old, new, why)
        if per_file > 1:
            yield (n, at, State.FINALIZING, state, "moved")


def main(argv: list[str]) -> None:
    db, rows = Path(argv[0]), int(argv[1])
    started = time.perf_counter()
    build(db, db.parent, rows, history_per_file=7)
    print(f"built {rows:,} rows in {time.perf_counter() - started:.1f}s "
          f"({db.stat().st_size / 2**20:.0f} MiB)")


if __name__ == "__main__":
    main(sys.argv[1:])
