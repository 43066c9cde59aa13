"""Peak memory of watcherd's streaming upload, by file size (issue 2's requirement).

Uploads sparse files of each size through ``watcherd.api.TwelveLabsClient`` to
the fake API on 127.0.0.1, each in a fresh process, and prints peak RSS,
throughput and CPU time. Peak RSS should stay flat as the size grows.

    .venv/bin/python -m bench.upload_memory [SIZE_MIB ...]    (default: 100 1536)
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.fakeapi import FakeTwelveLabs

CHILD = """
import json, resource, sys, time
from watcherd.api import TwelveLabsClient
base_url, key, path = sys.argv[1:4]
client = TwelveLabsClient(base_url, lambda: key)
started = time.perf_counter()
client.create_task(path, index_id="idx_test")
seconds = time.perf_counter() - started
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"seconds": seconds, "peak_rss_kib": usage.ru_maxrss,
                  "cpu_seconds": usage.ru_utime + usage.ru_stime}))
"""


def measure(api: FakeTwelveLabs, size_mib: int, folder: Path) -> dict:
    path = folder / f"sparse-{size_mib}.mp4"
    with open(path, "wb") as fh:
        fh.truncate(size_mib << 20)
    try:
        out = subprocess.run([sys.executable, "-c", CHILD, api.base_url, api.api_key, str(path)],
                             capture_output=True, text=True, check=True).stdout
    finally:
        path.unlink()
    result = json.loads(out)
    assert api.uploads()[-1].file.size == size_mib << 20, "the fake did not get every byte"
    return result


def main(argv: list[str]) -> int:
    sizes = [int(a) for a in argv] or [100, 1536]
    print(f"{'file MiB':>9} {'peak RSS MiB':>13} {'MiB/s':>7} {'CPU s':>7}")
    with FakeTwelveLabs() as api, tempfile.TemporaryDirectory() as folder:
        for size in sizes:
            r = measure(api, size, Path(folder))
            print(f"{size:>9} {r['peak_rss_kib'] / 1024:>13.0f} {size / r['seconds']:>7.0f} "
                  f"{r['cpu_seconds']:>7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
