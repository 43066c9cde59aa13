"""``watcherd demo``: see watcherd work end to end, with no Twelve Labs account.

It starts the simulator on a free 127.0.0.1 port, makes a temporary drop folder with a
generated config and key, drops a valid clip and one too small for Twelve Labs, runs
the real daemon (``python -m watcherd run``) until both are finished, prints ``status``,
the two sidecars' key lines and where the files went, and removes everything it made.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

INDEX_ID = "idx_demo"
VALID = "interview-640x360.mp4"
TOO_SMALL = "thumbnail-320x240.mp4"
EXPECTED = {VALID: "done", TOO_SMALL: "failed"}
SIDECAR_KEYS = ("status", "rule", "error_code", "reason", "task_id", "video_id", "index_id")
# Quick, not hasty: a clip must still be quiet this long before it counts as complete.
DAEMON_SETTINGS: dict[str, Any] = {
    "settle_seconds": 0.5, "poll_interval_seconds": 0.2, "rescan_interval_seconds": 2,
    "pause_check_seconds": 1, "log_level": "info",
    # Until the multipart path indexes its assets (issue 16 item 5), the demo's way to
    # done/ is /tasks.
    "upload_method": "tasks"}
# What a service manager or a caller's shell would otherwise hand to the daemon.
FOREIGN_ENVIRONMENT = ("TWELVELABS_API_KEY", "CREDENTIALS_DIRECTORY", "NOTIFY_SOCKET",
                       "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM", "STATE_DIRECTORY",
                       "WATCHERD_CONFIG")


def cmd_demo(args: argparse.Namespace) -> int:
    from watcherd.simulator import FakeTwelveLabs

    started = time.monotonic()
    # Ctrl-C and SIGTERM only raise a flag, checked between steps: an exception could
    # land between starting the daemon and the code that stops it.
    interrupted = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: interrupted.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    root = Path(tempfile.mkdtemp(prefix="watcherd-demo-"))
    key = "tlk_demo_" + secrets.token_hex(16)
    try:
        with FakeTwelveLabs(api_key=key, indexes=[INDEX_ID]) as api:
            print(f"simulator: {api.base_url} (a stand-in for Twelve Labs on loopback; index "
                  f"{INDEX_ID}, a generated key)", flush=True)
            config = _write_setup(root, api.base_url, key)
            _drop_clips(root)
            finished = not interrupted.is_set() and _run_daemon(root, config, args.timeout,
                                                                 interrupted)
            uploaded = sorted(r.file.filename for r in api.uploads() if r.file is not None)
        if interrupted.is_set():
            print("demo interrupted: the daemon and the simulator are stopped", file=sys.stderr,
                  flush=True)
            return 130
        if finished:
            _print_outcome(root)
            print(f"the simulator received {len(uploaded)} upload(s): "
                  f"{', '.join(uploaded) or 'none'}; a file refused locally costs no upload")
        ok = finished and all((root / where / name).is_file() for name, where in EXPECTED.items())
        print(f"demo {'finished' if ok else 'FAILED'} in {time.monotonic() - started:.1f}s",
              flush=True)
        return 0 if ok else 1
    finally:
        if args.keep:
            print(f"kept: {root} (config.yaml, state/, daemon.log)")
        else:
            shutil.rmtree(root, ignore_errors=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _write_setup(root: Path, base_url: str, key: str) -> Path:
    """The drop folder, a key file (0600) and a config naming them; returns the config."""
    (root / "inbox").mkdir()
    key_file = root / "api-key"
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump({
        "api": {"base_url": base_url, "key_file": str(key_file)},
        "state_db": str(root / "state" / "state.db"),
        **DAEMON_SETTINGS,
        "folders": [{"path": str(root / "inbox"), "index_id": INDEX_ID,
                     "done_dir": str(root / "done"), "failed_dir": str(root / "failed")}],
    }, sort_keys=False))
    return config


def _drop_clips(root: Path) -> None:
    """Made beside the inbox, then renamed in: each lands whole, as a careful copy would."""
    from watcherd.simulator.clips import make_video

    staging = root / "clips"
    staging.mkdir()
    make_video(staging / VALID, width=640, height=360, seconds=5)
    make_video(staging / TOO_SMALL, width=320, height=240, seconds=5)
    for name in EXPECTED:
        (staging / name).rename(root / "inbox" / name)
        print(f"dropped: inbox/{name}", flush=True)


def _run_daemon(root: Path, config: Path, timeout: float,
                interrupted: threading.Event) -> bool:
    """Runs the daemon until both clips have their sidecar; prints ``status`` before
    stopping it. False (with the daemon's log) if it did not get there."""
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN_ENVIRONMENT}
    env["NO_COLOR"] = "1"
    log_path = root / "daemon.log"
    with open(log_path, "wb") as log:
        daemon = subprocess.Popen([sys.executable, "-m", "watcherd", "run", "-c", str(config)],
                                  stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  env=env, cwd=root)
    try:
        print(f"daemon: python -m watcherd run -c config.yaml (pid {daemon.pid})", flush=True)
        outcome = _wait_for_sidecars(root, daemon, timeout, interrupted)
        if outcome == "finished":
            print("\n$ watcherd status", flush=True)
            subprocess.run([sys.executable, "-m", "watcherd", "status", "-c", str(config)],
                           env=env, cwd=root, timeout=30, check=False)
    finally:
        code = _stop(daemon)
    if outcome == "interrupted":
        return False
    if outcome != "finished" or code != 0:
        why = "did not finish both clips in time" if outcome == "timeout" else f"exited {code}"
        print(f"daemon {why}; its log:\n{_tail(log_path)}", file=sys.stderr, flush=True)
        return False
    return True


def _wait_for_sidecars(root: Path, daemon: subprocess.Popen[bytes], timeout: float,
                       interrupted: threading.Event) -> str:
    """"finished" once every clip has a sidecar, or "died", "timeout", "interrupted"."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(_sidecar(root, name) is not None for name in EXPECTED):
            return "finished"
        if daemon.poll() is not None:
            return "died"
        if interrupted.wait(0.1):
            return "interrupted"
    return "timeout"


def _stop(daemon: subprocess.Popen[bytes]) -> int:
    if daemon.poll() is None:
        daemon.send_signal(signal.SIGTERM)
    try:
        return daemon.wait(timeout=30)
    except subprocess.TimeoutExpired:
        daemon.kill()
        return daemon.wait()


def _sidecar(root: Path, name: str) -> Path | None:
    for where in ("done", "failed"):
        path = root / where / f"{name}.json"
        if path.is_file():
            return path
    return None


def _print_outcome(root: Path) -> None:
    for name in EXPECTED:
        sidecar = _sidecar(root, name)
        assert sidecar is not None
        document = json.loads(sidecar.read_text(encoding="utf-8"))
        moved = sidecar.with_name(name).relative_to(root)
        print(f"\ninbox/{name} -> {moved} (sidecar {moved}.json):")
        for key in SIDECAR_KEYS:
            if document.get(key) is not None:
                print(f"  {json.dumps(key)}: {json.dumps(document[key], ensure_ascii=False)}")
    print(flush=True)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])
