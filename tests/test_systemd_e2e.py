"""The real daemon under a fake systemd: a Unix datagram socket as ``$NOTIFY_SOCKET``.

READY, STATUS (UTF-8 names intact), WATCHDOG pings and what stops them,
RELOADING/READY around SIGHUP with good and bad configs, STOPPING and exit 0.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from itertools import pairwise
from pathlib import Path

import pytest

from tests.conftest import DaemonRunner, wait_for

HERE = Path(__file__).parent


class NotifySocket:
    """Collects every datagram the daemon sends, with its arrival time."""

    def __init__(self) -> None:
        # A short directory: socket paths are limited to 108 bytes.
        self.dir = tempfile.mkdtemp(prefix="wn-")
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.received: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._collect, name="fake-systemd")
        self._thread.start()

    def _collect(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            self.received.append((time.monotonic(), data.decode("utf-8")))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def messages(self, field: str | None = None) -> list[str]:
        return [m for _, m in list(self.received)
                if field is None or any(line.startswith(field) for line in m.splitlines())]

    def times(self, message: str) -> list[float]:
        return [t for t, m in list(self.received) if message in m.splitlines()]

    def wait(self, predicate: Callable[[str], bool], what: str, timeout: float = 20.0) -> str:
        found: list[str] = []

        def seen() -> bool:
            found[:] = [m for m in self.messages() if predicate(m)]
            return bool(found)
        wait_for(seen, timeout, lambda: f"{what}; got {self.messages()!r}")
        return found[0]


@pytest.fixture
def notify() -> Iterator[NotifySocket]:
    sock = NotifySocket()
    yield sock
    sock.close()


@pytest.fixture
def service(daemon: DaemonRunner, notify: NotifySocket) -> DaemonRunner:
    daemon.env["NOTIFY_SOCKET"] = notify.path
    return daemon


def watchdog_on(daemon: DaemonRunner, usec: int = 1_000_000) -> None:
    daemon.env["WATCHDOG_USEC"] = str(usec)


def test_ready_only_once_started_then_utf8_status_then_stopping(service, notify, fake_api,
                                                                  valid_clip):
    service.start()
    ready = notify.wait(lambda m: "READY=1" in m.splitlines(), "READY=1")
    # Everything READY promises had happened when it was sent.
    assert "watcherd started" in service.log()
    assert Path(service.settings["state_db"]).exists()
    assert "watching 1 folder" in ready and "0 done, 0 failed" in ready

    fake_api.inject("POST", "/tasks", action="late", delay=2.5)
    name = "видео café 東京.mp4"
    shutil.copy(valid_clip, service.inbox / name)
    uploading = notify.wait(lambda m: f"uploading {name}" in m, "STATUS naming the upload")
    assert uploading.startswith("STATUS=watching 1 folder; uploading ")
    notify.wait(lambda m: "STATUS=" in m and "1 done, 0 failed" in m, "STATUS after done")
    service.wait_done(name)

    assert service.stop() == 0
    assert "STOPPING=1" in notify.messages()[-1].splitlines()
    assert not notify.messages("WATCHDOG=1")  # not asked for: WATCHDOG_USEC unset


def test_watchdog_pings_at_half_the_requested_interval(service, notify):
    watchdog_on(service, 1_000_000)
    service.start()
    notify.wait(lambda m: "READY=1" in m.splitlines(), "READY=1")
    time.sleep(4)
    pings = notify.times("WATCHDOG=1")
    gaps = [b - a for a, b in pairwise(pings)]
    assert len(pings) >= 6, pings
    # systemd would kill us after 1 s without a ping; we ping about every 0.5 s.
    assert max(gaps) < 0.9, gaps
    assert min(gaps) > 0.3, gaps  # and not in a busy loop
    assert service.stop() == 0


def test_watchdog_pings_stop_when_an_upload_hangs(service, notify, valid_clip):
    service.command = [sys.executable, str(HERE / "sabotaged_daemon.py"), "hang-upload"]
    service.settings["stall_seconds"] = 5
    watchdog_on(service)
    service.start()
    notify.wait(lambda m: "WATCHDOG=1" in m.splitlines(), "first ping")
    shutil.copy(valid_clip, service.inbox / "stuck.mp4")
    wait_for(lambda: "uploading" in service.log(), 15, "the upload to start")
    wait_for(lambda: "withholding watchdog pings" in service.log(), 15,
             lambda: f"the hang to be noticed:\n{service.log()[-3000:]}")
    noticed = time.monotonic()
    time.sleep(2.5)  # five ping intervals
    assert not [t for t in notify.times("WATCHDOG=1") if t > noticed + 0.2]
    log = service.log()
    assert "thread upload-1 has made no progress" in log
    assert "sabotaged_daemon.py" in log  # where it hangs, for whoever reads the journal
    service.stop(signal.SIGKILL)


def test_watchdog_pings_stop_when_a_thread_dies(service, notify):
    service.command = [sys.executable, str(HERE / "sabotaged_daemon.py"), "kill-poller"]
    watchdog_on(service)
    service.start()
    notify.wait(lambda m: "READY=1" in m.splitlines(), "READY=1")
    wait_for(lambda: "thread poller is dead" in service.log(), 15, service.log)
    noticed = time.monotonic()
    time.sleep(2.5)
    assert not [t for t in notify.times("WATCHDOG=1") if t > noticed + 0.2]
    assert "starting a new one" not in service.log()  # systemd restarts the whole service
    service.stop(signal.SIGKILL)


def reload_and_wait(service: DaemonRunner, notify: NotifySocket) -> tuple[str, str]:
    """SIGHUP; the RELOADING=1 datagram and the READY=1 that follows it."""
    before = len(notify.messages())
    service.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: any("READY=1" in m.splitlines() for m in notify.messages()[before:]),
             20, lambda: f"READY=1 after the reload; got {notify.messages()!r}")
    new = notify.messages()[before:]
    reloading = next(m for m in new if "RELOADING=1" in m.splitlines())
    ready = next(m for m in new if "READY=1" in m.splitlines())
    assert new.index(reloading) < new.index(ready)
    return reloading, ready


def test_reload_applies_a_good_config_and_refuses_a_bad_one(service, notify, fake_api,
                                                             distinct_clips):
    first, second, third, late = distinct_clips(4)
    service.start()
    notify.wait(lambda m: "READY=1" in m.splitlines(), "READY=1")
    outbox = service.root / "second"
    outbox.mkdir()
    service.settings["folders"].append({"path": str(outbox), "index_id": "idx_test"})
    service.settings["settle_seconds"] = 0.3
    service.write_config()

    reloading, _ = reload_and_wait(service, notify)
    usec = int(next(line for line in reloading.splitlines()
                    if line.startswith("MONOTONIC_USEC=")).split("=")[1])
    assert abs(usec - time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000) < 30e6
    wait_for(lambda: "reloaded" in service.log(), 10, service.log)
    assert f"added folder {outbox}" in service.log()
    shutil.copy(first, outbox / "first.mp4")
    wait_for((outbox / "done" / "first.mp4.json").exists, 20, service.log)
    assert "settle_seconds changed" in service.log()
    assert "unchanged for 0.3s" in service.log()  # the new setting applied to new work

    # A bad config: refused, errors logged with their key path, the old one kept.
    good = dict(service.settings)
    service.settings = {**good, "settle_seconds": -1}
    service.write_config()
    reload_and_wait(service, notify)
    wait_for(lambda: "reload refused" in service.log(), 10, service.log)
    assert "settle_seconds" in service.log().split("reload refused")[1]
    shutil.copy(second, service.inbox / "second.mp4")
    service.wait_done("second.mp4")
    service.settings = good

    # Removing a folder: work in flight there finishes, nothing new is picked up.
    fake_api.set_progression((("indexing", 0.0), ("ready", 3.0)))
    shutil.copy(third, outbox / "third.mp4")
    wait_for(lambda: any(r["path"].endswith("third.mp4") and r["state"] == "indexing"
                         for r in service.status()), 20, service.log)
    service.settings = {**good, "folders": good["folders"][:1]}
    service.write_config()
    reload_and_wait(service, notify)
    wait_for(lambda: f"removed folder {outbox}" in service.log(), 10, service.log)
    shutil.copy(late, outbox / "late.mp4")
    wait_for((outbox / "done" / "third.mp4.json").exists, 20, service.log)
    time.sleep(2.5)  # longer than a rescan and a settle
    assert not any(r["path"].endswith("late.mp4") for r in service.status())
    assert (outbox / "late.mp4").exists()
    assert service.stop() == 0


def test_reload_rereads_the_api_key(service, notify, fake_api, valid_clip, tmp_path):
    key_file = tmp_path / "api-key"
    service.env.pop("TWELVELABS_API_KEY")
    service.settings["api"]["key_file"] = str(key_file)
    key_file.write_text(fake_api.api_key + "\n")
    key_file.chmod(0o600)
    service.start()
    notify.wait(lambda m: "READY=1" in m.splitlines(), "READY=1")
    key_file.write_text("tlk_rotated\n")
    fake_api.api_key = "tlk_rotated"
    reload_and_wait(service, notify)
    wait_for(lambda: f"API key from file {key_file}" in service.log().split("SIGHUP")[-1], 10,
             service.log)
    shutil.copy(valid_clip, service.inbox / "rotated.mp4")
    service.wait_done("rotated.mp4")
    assert fake_api.uploads()[-1].headers["x-api-key"] == "tlk_rotated"
    assert service.stop() == 0


def test_journald_lines_carry_priorities_and_no_timestamps(daemon, fake_api):
    # The daemon's stderr is the log file, so JOURNAL_STREAM names that file.
    daemon.log_path.touch()
    st = daemon.log_path.stat()
    daemon.env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
    missing = daemon.root / "missing"
    missing.mkdir()
    daemon.settings["folders"].append({"path": str(missing), "index_id": "idx_test"})
    daemon.start()
    shutil.rmtree(missing)  # at start it would be a configuration error (exit 78)
    wait_for(lambda: re.search(r"^<3>.*missing", daemon.log(), flags=re.MULTILINE),
             timeout=30, what="the error about the folder gone")
    assert daemon.stop() == 0
    lines = daemon.log().splitlines()
    assert lines and all(line[:3] in {"<7>", "<6>", "<4>", "<3>", "<2>"} for line in lines)
    assert any(line.startswith("<3>") and "missing" in line for line in lines)
    assert not any(re.match(r"<\d>\d{4}-\d\d-\d\d", line) for line in lines)


def test_a_watchdog_abort_dumps_every_threads_stack(daemon):
    # systemd's watchdog kills with SIGABRT; faulthandler must leave the stacks behind.
    daemon.start()
    assert daemon.stop(signal.SIGABRT) == -signal.SIGABRT
    log = daemon.log()
    assert "Fatal Python error: Aborted" in log
    assert log.count("Thread 0x") >= 5  # main, scanner, settler, upload-1, poller, ...
    assert "in _main_loop" in log
