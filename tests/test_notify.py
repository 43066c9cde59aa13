"""The sd_notify speaker: datagrams as systemd reads them, UTF-8, never raising."""

from __future__ import annotations

import os
import socket
import time
import uuid

import pytest

from watcherd.service.notify import Notifier


@pytest.fixture
def listener(tmp_path_factory):
    path = f"/tmp/wn-{uuid.uuid4().hex[:8]}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)
    yield path, sock
    sock.close()
    os.unlink(path)


def test_outside_systemd_everything_is_a_quiet_no_op():
    notifier = Notifier({})
    assert not notifier.enabled and not notifier.watchdog_enabled
    assert notifier.send("READY=1") is False
    notifier.ready("x")
    notifier.watchdog()


def test_one_utf8_datagram_per_message_to_a_path(listener):
    path, sock = listener
    notifier = Notifier({"NOTIFY_SOCKET": path})
    notifier.ready("watching 1 folder; uploading видео.mp4 43%")
    assert sock.recv(4096).decode("utf-8") == \
        "READY=1\nSTATUS=watching 1 folder; uploading видео.mp4 43%"
    notifier.close()


def test_abstract_namespace_addresses_start_with_at():
    name = f"watcherd-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(2)
    try:
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name})
        notifier.watchdog()
        notifier.close()
        assert sock.recv(4096) == b"WATCHDOG=1"
    finally:
        sock.close()


def test_status_is_sent_only_when_it_changes_and_stays_one_line(listener):
    path, sock = listener
    notifier = Notifier({"NOTIFY_SOCKET": path})
    notifier.status("a")
    notifier.status("a")
    notifier.status("b\nc")
    assert sock.recv(4096) == b"STATUS=a"
    assert sock.recv(4096) == b"STATUS=b c"
    notifier.close()
    sock.settimeout(0.2)
    with pytest.raises(TimeoutError):
        sock.recv(4096)


def test_reloading_carries_the_monotonic_clock_and_stopping_says_so(listener):
    path, sock = listener
    notifier = Notifier({"NOTIFY_SOCKET": path})
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    notifier.reloading()
    lines = sock.recv(4096).decode().splitlines()
    assert lines[0] == "RELOADING=1"
    usec = int(lines[1].removeprefix("MONOTONIC_USEC="))
    assert before <= usec < before + 5_000_000
    notifier.stopping()
    assert sock.recv(4096).decode().splitlines()[0] == "STOPPING=1"
    notifier.close()


@pytest.mark.parametrize("env, interval", [
    ({"WATCHDOG_USEC": "30000000"}, 15.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "soon"}, None),
    ({}, None),
])
def test_watchdog_interval_is_half_of_watchdog_usec_for_this_process(env, interval):
    notifier = Notifier({"NOTIFY_SOCKET": "/run/systemd/notify", **env})
    assert notifier.watchdog_interval == interval
    assert notifier.watchdog_enabled is (interval is not None)


def test_a_missing_socket_is_logged_once_and_never_raised(tmp_path, caplog):
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert notifier.send("READY=1") is False
    assert notifier.send("WATCHDOG=1") is False
    warnings = [r for r in caplog.records if "cannot notify systemd" in r.message]
    assert len(warnings) == 1
    notifier.close()


def test_unsupported_socket_kinds_disable_notification():
    assert not Notifier({"NOTIFY_SOCKET": "vsock:2:1234"}).enabled
