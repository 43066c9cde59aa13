"""Every benchmark in one run: ``python -m bench all [--quick]``, or one by name.

All traffic goes to the fake Twelve Labs API on 127.0.0.1. ``--quick`` runs
each bench small (seconds, not minutes) to check that it still works; its
figures are not the ones in bench/README.md.

    .venv/bin/python -m bench all            # the full run (about 15 minutes)
    .venv/bin/python -m bench all --quick    # a smoke run (about 2 minutes)
    .venv/bin/python -m bench burst          # one bench, with its own options
"""

from __future__ import annotations

import importlib
import sys
import time

# name -> (module, arguments of the full run, arguments of the quick run)
BENCHES = {
    "upload_compare": ("bench.upload_compare", [], ["--quick"]),
    "upload_sink": ("bench.upload_sink", [], ["--sizes", "64", "--rounds", "1"]),
    "multipart_compare": ("bench.multipart_compare", [], ["--quick"]),
    "pickup_latency": ("bench.pickup_latency", [], ["--files", "8", "--settle", "1"]),
    "burst": ("bench.burst", [], ["--files", "40"]),
    "idle": ("bench.idle", [], ["--seconds", "5"]),
    "rescan_cost": ("bench.rescan_cost", [], ["--files", "2000", "--rounds", "1"]),
    "startup_scale": ("bench.startup_scale", [], ["--files", "500"]),
    "status_rows": ("bench.status_rows", [], ["10000"]),
    "history": ("bench.history", [], ["--rows", "20000", "--seconds", "5"]),
    "cli_start": ("bench.cli_start", [], ["--runs", "2"]),
    "api_economy": ("bench.api_economy", [], ["--files", "4", "--indexing", "15"]),
    "cluster": ("bench.cluster", [], ["--files", "12", "--upload-seconds", "0.3"]),
    "metrics_scrape": ("bench.metrics_scrape", [], ["--files", "2000", "--scrapes", "5"]),
}


def run(name: str, quick: bool) -> None:
    module, full, smoke = BENCHES[name]
    started = time.monotonic()
    print(f"\n=== {name} ({module}{' --quick' if quick else ''}) ===", flush=True)
    importlib.import_module(module).main(smoke if quick else full)
    print(f"({name}: {time.monotonic() - started:.0f} s)", flush=True)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__ + "\nbenches: " + ", ".join(BENCHES))
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name == "all":
        for each in BENCHES:
            run(each, quick="--quick" in rest)
        return 0
    if name not in BENCHES:
        print(f"unknown bench {name!r}; one of: all, {', '.join(BENCHES)}", file=sys.stderr)
        return 2
    importlib.import_module(BENCHES[name][0]).main(rest)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
