"""``watcherd demo``: the real daemon against the simulator, and nothing left behind."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(180)


def demo_environment(scratch: Path) -> dict[str, str]:
    # Its temporary folder goes under TMPDIR: an empty scratch afterwards means it cleaned up.
    env = {**os.environ, "TMPDIR": str(scratch), "TWELVELABS_API_KEY": "tlk_not_for_the_demo"}
    env.pop("NOTIFY_SOCKET", None)
    return env


def assert_gone(pid: int) -> None:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return
    assert b"watcherd" not in cmdline, f"pid {pid} is still running: {cmdline!r}"


def assert_port_closed(port: int) -> None:
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_demo_runs_the_daemon_on_two_clips_and_leaves_nothing_behind(tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "watcherd", "demo"], capture_output=True,
                            text=True, env=demo_environment(scratch), cwd=tmp_path, timeout=120,
                            check=False)
    elapsed = time.monotonic() - started
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert elapsed < 60, f"the demo took {elapsed:.1f}s"
    simulator = re.search(r"^simulator: http://127\.0\.0\.1:(\d+)/v1\.3 ", out, re.MULTILINE)
    daemon = re.search(r"^daemon: python -m watcherd run -c config.yaml \(pid (\d+)\)$", out,
                       re.MULTILINE)
    assert simulator and daemon, out
    # status, printed while the daemon ran: one done, one failed
    assert "$ watcherd status" in out and "daemon running" in out
    assert "Recently done" in out and "Recently failed" in out
    # where each file went, and its sidecar's key lines
    valid, small = out.split("inbox/interview-640x360.mp4 -> ")[1].split(
        "inbox/thumbnail-320x240.mp4 -> ")
    assert valid.startswith("done/interview-640x360.mp4 (sidecar "
                            "done/interview-640x360.mp4.json):")
    assert '"status": "ready"' in valid and '"index_id": "idx_demo"' in valid
    assert re.search(r'"task_id": "[0-9a-f]{24}"', valid)
    assert re.search(r'"video_id": "[0-9a-f]{24}"', valid)
    assert small.startswith("failed/thumbnail-320x240.mp4 (sidecar "
                            "failed/thumbnail-320x240.mp4.json):")
    assert '"status": "failed"' in small and '"rule": "resolution"' in small
    assert "short side 240 is below the minimum of 360" in small
    assert "task_id" not in small  # refused locally: never uploaded
    assert "received 1 upload(s): interview-640x360.mp4;" in out
    assert re.search(r"^demo finished in \d+\.\ds$", out, re.MULTILINE)
    # nothing behind: no folder, no daemon, no simulator
    assert list(scratch.iterdir()) == []
    assert_gone(int(daemon.group(1)))
    assert_port_closed(int(simulator.group(1)))


def test_demo_cleans_up_when_it_is_stopped_half_way(tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "watcherd", "demo"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=demo_environment(scratch),
                            cwd=tmp_path)
    try:
        lines = []
        assert proc.stdout is not None
        while not (lines and lines[-1].startswith("daemon: ")):
            line = proc.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
        assert list(scratch.iterdir()), "the demo folder should exist while it runs"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, out + err
    assert "demo interrupted" in err
    assert list(scratch.iterdir()) == []
    assert_gone(int(re.search(r"\(pid (\d+)\)", lines[-1]).group(1)))
    assert_port_closed(int(re.search(r"127\.0\.0\.1:(\d+)/", lines[0]).group(1)))
