"""What a rescan costs per file when every file is already tracked, and cold discovery.

In one process, without the daemon around it: a real state database, the real
``Settler`` and ``scan_folder``. N files (hard links to one small file) are
discovered from cold (every hint a new row), then their rows are moved past
settling (as if uploading) and the folder is rescanned: each scan hint goes
through the intake queue and ``Settler.step`` as in the daemon. Reported per
file, best of ``--rounds`` rescans.

``--before DIR`` runs the same measurement a second time in a child process with
``DIR`` (a checkout of older code) first on ``sys.path``, and prints both.

    .venv/bin/python -m bench.rescan_cost [--files 50000] [--rounds 3] [--before DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESCAN_TARGET_US = 15.0


def measure(files: int, rounds: int) -> dict[str, float]:
    # Imported here, so that a --before child imports the old code.
    from watcherd.config import parse_config
    from watcherd.intake.settle import Hint, Settler
    from watcherd.intake.watcher import scan_folder
    from watcherd.state.states import State
    from watcherd.state.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        inbox = root / "inbox"
        (inbox / "done").mkdir(parents=True)
        one = root / "one.mp4"
        one.write_bytes(b"x" * 1000)
        for n in range(files):
            os.link(one, inbox / f"tracked-{n:06d}.mp4")
        config = parse_config({"settle_seconds": 5, "folders": [
            {"path": str(inbox), "index_id": "idx"}]}, base_dir=root, env={})
        folder = config.folders[0]
        store = Store(root / "state.db").open()
        intake: queue.SimpleQueue = queue.SimpleQueue()
        settler = Settler(config=config, store=store, intake=intake, release=lambda _: None)

        def scan_and_take_in() -> float:
            started = time.perf_counter()
            for path in scan_folder(folder):
                intake.put(Hint(path, "scan"))
            while not intake.empty():
                settler.step()
            return time.perf_counter() - started

        discover = scan_and_take_in()
        for record in store.in_states(State.SETTLING):  # as if the pipeline had them
            store.transition(record.id, State.UPLOADING, "bench")
        settler.candidates.clear()
        rescans = [scan_and_take_in() for _ in range(rounds)]
        store.close()
    return {"discover_us": discover / files * 1e6, "rescan_us": min(rescans) / files * 1e6}


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--before", type=Path, help="a checkout of the code to compare with")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    result = measure(args.files, args.rounds)
    if args.json:
        print(json.dumps(result))
        return result
    rows = [("now", result)]
    if args.before:
        code = (f"import sys; sys.path.insert(0, {str(args.before)!r}); "
                "from bench.rescan_cost import main; "
                f"main(['--files', '{args.files}', '--rounds', '{args.rounds}', '--json'])")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True, cwd=Path(__file__).resolve().parent.parent).stdout
        rows.append(("before", json.loads(out.strip().splitlines()[-1])))
    print(f"{args.files:,} files in one folder, in-process (no daemon), best of "
          f"{args.rounds} rescans")
    print(f"{'code':<8} {'cold discovery µs/file':>22} {'rescan, all tracked µs/file':>27}")
    for name, r in rows:
        print(f"{name:<8} {r['discover_us']:>22.1f} {r['rescan_us']:>27.1f}")
    ok = result["rescan_us"] <= RESCAN_TARGET_US
    print(f"target: rescan <= {RESCAN_TARGET_US:g} µs per tracked file: "
          f"{'PASS' if ok else 'MISS'} ({result['rescan_us']:.1f})")
    return result


if __name__ == "__main__":
    main()
