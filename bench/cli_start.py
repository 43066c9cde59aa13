"""How fast the operator commands start: each beyond Python's own start-up (issue 15: < 0.1 s).

A fresh process per run, best of ``--runs``: ``python -c pass`` (the
interpreter with its site packages: the floor), then ``watcherd --version``,
``check-config`` and ``status`` / ``status --json`` on an empty database, so
the figure is imports and set-up, not the database (``bench.history`` times
them at a million files).

    .venv/bin/python -m bench.cli_start [--runs 7]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.harness import print_table
from watcherd.state.store import Store

TARGET_SECONDS = 0.1


def best_of(argv: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        subprocess.run(argv, check=False, capture_output=True,
                       env={"TWELVELABS_API_KEY": "tlk_bench", "PATH": "/usr/bin:/bin"})
        times.append(time.perf_counter() - began)
    return min(times)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = root / "config.yaml"
        config.write_text(f"state_db: {root / 'state.db'}\n"
                          f"folders:\n  - {{path: {root}, index_id: idx}}\n")
        Store(root / "state.db").open().close()
        floor = best_of([sys.executable, "-c", "pass"], args.runs)
        watcherd = [sys.executable, "-m", "watcherd"]
        c = ["-c", str(config)]
        results = {" ".join(a): best_of([*watcherd, *a], args.runs) - floor
                   for a in (["--version"], ["check-config", *c], ["status", *c],
                             ["status", "--json", *c])}
    rows = [("command", "seconds beyond python", "verdict")]
    rows += [(f"watcherd {name.split(' -c ')[0]}", f"{extra:.3f}",
              "PASS" if extra < TARGET_SECONDS else "FAIL") for name, extra in results.items()]
    print_table(f"CLI start-up, best of {args.runs} (python -c pass: {floor:.3f} s; target < "
                f"{TARGET_SECONDS} s beyond it)", rows)
    return results


if __name__ == "__main__":
    main()
