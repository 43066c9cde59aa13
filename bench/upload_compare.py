"""watcherd's upload against the official SDK and curl: throughput, CPU and peak memory.

Uploads the same valid MP4, padded to each size with a sparse top-level ``free`` box,
to the fake API on 127.0.0.1 with three uploaders, each upload in a fresh child process:

* watcherd: ``watcherd.twelvelabs.client.TwelveLabsClient.create_task`` under this Python;
* sdk: ``twelvelabs`` (pinned in bench/sdk-requirements.txt) ``client.tasks.create``, run
  from its own venv bench/.venv-sdk, which is made on first use and reused while the pins match;
* curl: ``curl -F video_file=@PATH``, a floor for what a plain streaming client costs.

The machines are noisy, so the three alternate within one run (the order rotates every
round) and the report is medians plus ratios. Wall time, CPU and peak RSS come from
``os.wait4`` on each child; the fake API runs in this process and costs CPU here.

The ``wait4`` is done by a tiny launcher (``python -I -S``), not by this process: Linux
carries the spawning process's peak RSS into the child's ``ru_maxrss`` across ``execve``,
so a child of this ~55 MiB process (PyAV, the fake API) could never report less. The
launcher's own floor is measured (``true``) and printed; values at that floor mean "<= floor".

    .venv/bin/python -m bench.upload_compare [--sizes MIB ...] [--rounds N] [--quick]
    (default: --sizes 100 1536 --rounds 3; --quick is --sizes 20 60 --rounds 1)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import av

from watcherd.simulator import FakeTwelveLabs
from watcherd.simulator.clips import make_video

BENCH = Path(__file__).resolve().parent
SDK_VENV = BENCH / ".venv-sdk"
SDK_REQUIREMENTS = BENCH / "sdk-requirements.txt"
SDK_MARKER = SDK_VENV / "bench-requirements.txt"  # the requirements it was built from
INDEX = "idx_test"
TOOLS = ("watcherd", "sdk", "curl")

# Each Python child times the request alone too, so interpreter start-up and imports
# can be told apart from the upload; the parent's wall time includes them.
WATCHERD_CHILD = """
import json, sys, time
from watcherd.twelvelabs.client import TwelveLabsClient
base_url, key, path, index = sys.argv[1:5]
client = TwelveLabsClient(base_url, lambda: key)
started = time.perf_counter()
task = client.create_task(path, index_id=index)
print(json.dumps({"task_id": task["_id"], "upload_seconds": time.perf_counter() - started}))
"""

# As documented (twelvelabs-api.md 8.2); no request_options, so max_retries stays 0.
SDK_CHILD = """
import json, sys, time
from twelvelabs import TwelveLabs
base_url, key, path, index = sys.argv[1:5]
client = TwelveLabs(api_key=key, base_url=base_url)
started = time.perf_counter()
with open(path, "rb") as fh:
    task = client.tasks.create(index_id=index, video_file=fh)
print(json.dumps({"task_id": task.id, "upload_seconds": time.perf_counter() - started}))
"""


# Spawns one command and reports its os.wait4 rusage (see the module docstring for why
# this is not done by the bench process). The SDK honours TWELVELABS_BASE_URL over
# base_url, so it is dropped from the environment.
LAUNCHER = """
import json, os, sys, time
result, argv = sys.argv[1], sys.argv[2:]
env = {k: v for k, v in os.environ.items() if k != "TWELVELABS_BASE_URL"}
started = time.perf_counter()
pid = os.posix_spawnp(argv[0], argv, env)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - started
with open(result, "w") as fh:
    json.dump({"exit": os.waitstatus_to_exitcode(status), "wall": wall,
               "cpu": usage.ru_utime + usage.ru_stime, "maxrss_kib": usage.ru_maxrss}, fh)
"""


@dataclass
class Sample:
    tool: str
    size_mib: int
    round: int
    wall: float           # child process start to exit, timed by the launcher
    upload: float         # the request alone, as the child timed it
    cpu: float            # child user + system
    peak_rss_kib: int
    server_cpu: float     # this process (the fake API) during the upload


# -- the SDK's own venv --------------------------------------------------------


def sdk_python() -> Path:
    """bench/.venv-sdk's python, (re)built when missing or made from other pins."""
    python = SDK_VENV / "bin" / "python"
    wanted = SDK_REQUIREMENTS.read_text()
    if python.exists() and SDK_MARKER.exists() and SDK_MARKER.read_text() == wanted:
        return python
    print(f"building {SDK_VENV} from {SDK_REQUIREMENTS.name} ...", file=sys.stderr, flush=True)
    # The same interpreter as watcherd's child, so the Python version is no variable.
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(SDK_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "-r", str(SDK_REQUIREMENTS)],
                   check=True)
    SDK_MARKER.write_text(wanted)  # last, so a failed install is redone next time
    return python


def versions(sdk: Path) -> str:
    code = ("from importlib.metadata import version as v; "
            "print(f\"twelvelabs {v('twelvelabs')} (httpx {v('httpx')})\")")
    sdk_v = subprocess.run([str(sdk), "-c", code], capture_output=True, text=True,
                           check=True).stdout.strip()
    curl_v = subprocess.run(["curl", "--version"], capture_output=True, text=True,
                            check=True).stdout.split()[1]
    return (f"watcherd {version('watcherd')} (requests {version('requests')}, "
            f"urllib3 {version('urllib3')}), {sdk_v}, curl {curl_v}")


# -- test files ----------------------------------------------------------------


def pad_video(clip: Path, size_mib: int, folder: Path) -> Path:
    """``clip`` plus one top-level ``free`` box up to ``size_mib``, sparse on disk.

    MP4 readers skip ``free`` boxes, so the file stays a valid video; only the 8-byte
    box header is written, the rest is a hole that reads back as zeros.
    """
    data = clip.read_bytes()
    total = size_mib << 20
    padding = total - len(data)
    if not 8 <= padding < 1 << 32:  # a 32-bit box size, and room for its header
        raise ValueError(f"{size_mib} MiB cannot be padded from a {len(data)}-byte clip")
    path = folder / f"padded-{size_mib}.mp4"
    with open(path, "wb") as fh:
        fh.write(data + struct.pack(">I", padding) + b"free")
        fh.truncate(total)
    return path


def check_video(path: Path) -> None:
    """PyAV must still open the padded file, find a video stream and decode a frame."""
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise AssertionError(f"{path.name}: no video stream after padding")
        next(container.decode(video=0))


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


# -- one upload ------------------------------------------------------------------


def command(tool: str, sdk: Path, api: FakeTwelveLabs, path: Path) -> list[str]:
    args = [api.base_url, api.api_key, str(path), INDEX]
    if tool == "watcherd":
        return [sys.executable, "-c", WATCHERD_CHILD, *args]
    if tool == "sdk":
        return [str(sdk), "-c", SDK_CHILD, *args]
    # time_total lets curl's request be timed like the Python children's.
    return ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{time_total}",
            "-H", f"x-api-key: {api.api_key}", "-F", f"index_id={INDEX}",
            "-F", f"video_file=@{path}", f"{api.base_url}/tasks"]


def parse_output(tool: str, out: str) -> tuple[str | None, float]:
    """(task id or None for curl, seconds of the request) from the child's stdout."""
    if tool == "curl":
        status, seconds = out.split()
        if status != "200":
            raise AssertionError(f"curl got HTTP {status}")
        return None, float(seconds)
    result = json.loads(out)
    return result["task_id"], result["upload_seconds"]


def spawn(argv: list[str], scratch: Path, timeout: float) -> tuple[dict, str, str]:
    """Run ``argv`` under the launcher: (its wait4 result, stdout, stderr)."""
    result = scratch / "rusage.json"
    result.unlink(missing_ok=True)
    with open(scratch / "out", "w+") as out, open(scratch / "err", "w+") as err:
        # Files, not pipes: nothing to drain while the child runs.
        launcher = subprocess.Popen([sys.executable, "-I", "-S", "-c", LAUNCHER, str(result),
                                     *argv], stdout=out, stderr=err, start_new_session=True)
        try:
            launcher.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(launcher.pid, signal.SIGKILL)  # the group: the launcher and its child
            launcher.wait()
            raise RuntimeError(f"{argv[0]} took over {timeout:.0f} s") from None
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if launcher.returncode != 0 or not result.exists():
        raise RuntimeError(f"the launcher failed ({launcher.returncode}):\n{stderr[-3000:]}")
    return json.loads(result.read_text()), stdout, stderr


def upload(tool: str, sdk: Path, api: FakeTwelveLabs, path: Path, digest: str,
           scratch: Path, timeout: float) -> tuple[float, float, float, int, float]:
    """One upload in a fresh child: (wall, upload, cpu, peak RSS KiB, server CPU).

    Fails unless the fake recorded exactly one new task with every byte of the file.
    """
    before = len(api.uploads())
    server_before = _self_cpu()
    usage, stdout, stderr = spawn(command(tool, sdk, api, path), scratch, timeout)
    server_cpu = _self_cpu() - server_before
    if usage["exit"] != 0:
        raise RuntimeError(f"{tool} exited {usage['exit']}:\n{stderr.strip()[-3000:]}")
    task_id, seconds = parse_output(tool, stdout)
    uploads = api.uploads()
    if len(uploads) != before + 1:
        raise AssertionError(f"{tool}: the fake recorded {len(uploads) - before} new tasks, not 1")
    rec = uploads[-1]
    if task_id is not None and rec.task_id != task_id:
        raise AssertionError(f"{tool}: printed task {task_id}, the fake created {rec.task_id}")
    if rec.fields.get("index_id") != INDEX or rec.file is None \
            or rec.file.size != path.stat().st_size or rec.file.sha256 != digest:
        raise AssertionError(f"{tool}: the fake did not get the file intact: {rec.file}")
    return usage["wall"], seconds, usage["cpu"], usage["maxrss_kib"], server_cpu


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_mib_now() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# -- the report ----------------------------------------------------------------


def median_of(samples: list[Sample], tool: str, size: int,
              value: Callable[[Sample], float]) -> float:
    return statistics.median(value(s) for s in samples if s.tool == tool and s.size_mib == size)


def paired(samples: list[Sample], a: str, b: str, size: int,
           value: Callable[[Sample], float]) -> list[float]:
    """a/b within each round: same machine state, so less noisy than medians alone."""
    rounds = sorted({s.round for s in samples})
    pick = {(s.tool, s.round): value(s) for s in samples if s.size_mib == size}
    return [pick[a, r] / pick[b, r] for r in rounds]


def mibps(s: Sample) -> float:
    return s.size_mib / s.wall


def upload_mibps(s: Sample) -> float:
    return s.size_mib / s.upload


def rss_mib(s: Sample) -> float:
    return s.peak_rss_kib / 1024


def report(samples: list[Sample], sizes: list[int], rounds: int) -> None:
    print(f"medians over {rounds} round(s). MiB/s: file MiB / child process wall time "
          "(start-up and imports included);\nreq MiB/s: the request alone, as timed by the "
          "child; server CPU: the fake API (this process) during the upload")
    print(f"{'size MiB':>8}  {'tool':<8} {'MiB/s':>7} {'req MiB/s':>9} {'CPU s/GiB':>9} "
          f"{'peak RSS MiB':>12} {'server CPU s/GiB':>16}")
    for size in sizes:
        for tool in TOOLS:
            def med(value: Callable[[Sample], float], t: str = tool, z: int = size) -> float:
                return median_of(samples, t, z, value)
            gib = size / 1024
            print(f"{size:>8}  {tool:<8} {med(mibps):>7.0f} {med(upload_mibps):>9.0f} "
                  f"{med(lambda s: s.cpu) / gib:>9.2f} {med(rss_mib):>12.1f} "
                  f"{med(lambda s: s.server_cpu) / gib:>16.2f}")
    print()
    print("ratios (of medians; [per-round range])")
    for size in sizes:
        for tool in ("watcherd", "curl"):
            for label, value in (("throughput", mibps), ("req thr.", upload_mibps),
                                 ("peak RSS", rss_mib)):
                ratio = median_of(samples, tool, size, value) / median_of(samples, "sdk", size,
                                                                         value)
                each = paired(samples, tool, "sdk", size, value)
                print(f"  {size:>5} MiB  {tool + '/sdk':<12} {label:<10} {ratio:>6.2f}  "
                      f"[{min(each):.2f}-{max(each):.2f}]")
    small, big = min(sizes), max(sizes)
    for tool in TOOLS:
        flat = median_of(samples, tool, big, rss_mib) / median_of(samples, tool, small, rss_mib)
        print(f"  {tool:<21} peak RSS {big} MiB / {small} MiB {flat:>6.2f}")
    print()
    throughput = median_of(samples, "watcherd", big, mibps) / median_of(samples, "sdk", big, mibps)
    flat = median_of(samples, "watcherd", big, rss_mib) / median_of(samples, "watcherd", small,
                                                                    rss_mib)
    vs_sdk = median_of(samples, "watcherd", big, rss_mib) / median_of(samples, "sdk", big,
                                                                      rss_mib)
    print("targets")
    for ok, text in (
        (throughput >= 1.0, f"watcherd throughput >= sdk at {big} MiB: {throughput:.2f} >= 1.0"),
        (flat <= 1.2, f"watcherd peak RSS flat: RSS({big}) / RSS({small}) = {flat:.2f} <= 1.2"),
        (vs_sdk <= 1.5, f"watcherd peak RSS <= 1.5 x sdk at {big} MiB: {vs_sdk:.2f} <= 1.5"),
    ):
        print(f"  {'PASS' if ok else 'MISS'}  {text}")


# -- main ------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.upload_compare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", metavar="MIB", default=[100, 1536])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="smoke run: --sizes 20 60 --rounds 1")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.rounds = [20, 60], 1
    if args.rounds < 1 or min(args.sizes) < 1:
        parser.error("rounds and sizes must be positive")
    args.sizes = sorted(set(args.sizes))
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if shutil.which("curl") is None:
        raise SystemExit("curl is not installed")
    sdk = sdk_python()
    samples: list[Sample] = []
    with FakeTwelveLabs() as api, tempfile.TemporaryDirectory() as tmp:
        if api.store_dir is not None:
            raise AssertionError("the fake must not keep uploaded bodies")
        folder = Path(tmp)
        clip = make_video(folder / "clip.mp4", seconds=2.0)
        files = {size: pad_video(clip, size, folder) for size in args.sizes}
        for path in files.values():
            check_video(path)
        digests = {size: sha256(path) for size, path in files.items()}
        print(versions(sdk))
        print(f"sizes {', '.join(map(str, args.sizes))} MiB (a {clip.stat().st_size}-byte "
              f"H.264 MP4 + sparse 'free' box; PyAV opens and decodes each), "
              f"{os.cpu_count()} CPUs, fake API on 127.0.0.1")
        floor = spawn(["true"], folder, 30)[0]["maxrss_kib"] / 1024
        print(f"peak RSS floor (what the launcher passes on to any child): {floor:.1f} MiB")
        rss_start = rss_mib_now()
        # Warm-up, not counted: each tool once with the bare clip, so imports are in the
        # page cache for all three and a broken tool fails before the long run.
        for tool in TOOLS:
            upload(tool, sdk, api, clip, sha256(clip), folder, 120)
        for r in range(args.rounds):
            order = TOOLS[r % len(TOOLS):] + TOOLS[:r % len(TOOLS)]
            for size in args.sizes:
                for tool in order:
                    wall, seconds, cpu, rss, server = upload(
                        tool, sdk, api, files[size], digests[size], folder,
                        timeout=120 + size / 5)  # fails below 5 MiB/s rather than hang
                    samples.append(Sample(tool, size, r, wall, seconds, cpu, rss, server))
                    print(f"round {r + 1}/{args.rounds} {size:>5} MiB {tool:<8} {wall:6.2f} s "
                          f"cpu {cpu:5.2f} s rss {rss / 1024:6.1f} MiB", file=sys.stderr,
                          flush=True)
        rss_end = rss_mib_now()
        uploaded = len(api.uploads())
    print()
    report(samples, args.sizes, args.rounds)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nbench process (fake API, store_dir=None) after {uploaded} uploads: RSS "
          f"{rss_start:.0f} MiB before the uploads, {rss_end:.0f} MiB after, peak {peak:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
