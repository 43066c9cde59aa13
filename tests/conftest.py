"""Shared fixtures: the fake Twelve Labs API and the real daemon as a subprocess."""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from watcherd.simulator.clips import make_video

TEST_KEY = "tlk_test_key_do_not_log_0123456789"


@pytest.fixture(autouse=True)
def _no_thread_leaks():
    """A test that leaves threads behind would slowly poison the rest of the run."""
    before = {t.ident for t in threading.enumerate()}
    yield
    deadline = time.monotonic() + 5
    collected = False
    while True:
        leaked = [t for t in threading.enumerate() if t.ident not in before and t.is_alive()]
        if not leaked:
            return
        if not collected:
            # Only now: a full collection costs ~0.07 s a test, half the quick loop's time.
            gc.collect()
            collected = True
            continue
        if time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    pytest.fail(f"threads leaked: {[t.name for t in leaked]}")


@pytest.fixture
def fake_api(tmp_path) -> Iterator[Any]:
    from watcherd.simulator import FakeTwelveLabs

    with FakeTwelveLabs(api_key=TEST_KEY) as api:
        yield api


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("clips")


@pytest.fixture(scope="session")
def valid_clip(clip_dir) -> Path:
    """A tiny valid video: 640x360, 5 s, with audio."""
    return make_video(clip_dir / "valid.mp4")


@pytest.fixture(scope="session")
def distinct_clips(clip_dir) -> Callable[[int], list[Path]]:
    """``distinct_clips(n)``: n valid clips with n different contents (dedupe tells copies
    of one content apart, so tests that count uploads per file need distinct bytes)."""

    def make(n: int) -> list[Path]:
        clips = []
        for k in range(n):
            path = clip_dir / f"distinct-{k:03d}.mp4"
            clips.append(path if path.exists() else make_video(path, seconds=5 + k / 2))
        return clips

    return make


class FakeClock:
    """An injectable clock that only moves when a test says so."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0,
             what: str | Callable[[], str] = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    described = what() if callable(what) else what
    raise AssertionError(f"timed out after {timeout}s waiting for {described or predicate}")


class DaemonRunner:
    """Runs ``python -m watcherd run`` on temp folders against the fake API."""

    def __init__(self, root: Path, api: Any) -> None:
        self.root = root
        self.api = api
        self.inbox = root / "inbox"
        self.inbox.mkdir(exist_ok=True)
        self.log_path = root / "daemon.log"
        self.proc: subprocess.Popen | None = None
        self.settings: dict[str, Any] = {
            "api": {"base_url": api.base_url, "connect_timeout_seconds": 2,
                    "io_timeout_seconds": 10},
            "state_db": str(root / "state" / "state.db"),
            "settle_seconds": 0.5,
            "poll_interval_seconds": 0.1,
            "rescan_interval_seconds": 2,
            "pause_check_seconds": 0.5,
            "log_level": "debug",
            # The tests written for /tasks keep it; the multipart tests set their own.
            "upload_method": "tasks",
            "folders": [{"path": str(self.inbox), "index_id": "idx_test"}],
        }
        # Tests may run a wrapper instead (e.g. one that makes a thread hang).
        self.command = [sys.executable, "-m", "watcherd"]
        self.env = {**os.environ, "TWELVELABS_API_KEY": TEST_KEY}
        self.env.pop("CREDENTIALS_DIRECTORY", None)
        self.env.pop("JOURNAL_STREAM", None)
        self.popen_options: dict[str, Any] = {}  # e.g. user=/group= to drop root

    @property
    def done(self) -> Path:
        return self.inbox / "done"

    @property
    def failed(self) -> Path:
        return self.inbox / "failed"

    def write_config(self) -> Path:
        path = self.root / "config.yaml"
        path.write_text(yaml.safe_dump(self.settings))
        return path

    def start(self) -> DaemonRunner:
        config = self.write_config()
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen(
                [*self.command, "run", "--config", str(config)],
                stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.root,
                **self.popen_options)
        wait_for(lambda: "watcherd started" in self.log() or self.proc.poll() is not None,
                 timeout=30, what="daemon start")
        assert self.proc.poll() is None, self.log()
        return self

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.proc = None
        return code

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def sidecar(self, moved: Path) -> dict[str, Any]:
        return json.loads(moved.with_name(moved.name + ".json").read_text())

    def wait_done(self, name: str, where: str = "done", timeout: float = 20.0) -> Path:
        target = (self.done if where == "done" else self.failed) / name
        sidecar = target.with_name(name + ".json")
        wait_for(sidecar.exists, timeout, lambda: f"{sidecar} (log:\n{self.log()[-4000:]})")
        return target

    def status(self) -> list[dict[str, Any]]:
        out = subprocess.run(
            [sys.executable, "-m", "watcherd", "list", "--json", "-c", str(self.write_config())],
            capture_output=True, text=True, env=self.env, timeout=60, check=True).stdout
        return [json.loads(line) for line in out.splitlines()]

    def command_json(self, *args: str, timeout: float = 120) -> Any:
        """``watcherd ARGS --json`` against this daemon's config, its output decoded."""
        done = subprocess.run([sys.executable, "-m", "watcherd", *args, "--json",
                               "-c", str(self.write_config())],
                              capture_output=True, text=True, env=self.env, timeout=timeout,
                              check=False)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


@pytest.fixture
def daemon(tmp_path, fake_api) -> Iterator[DaemonRunner]:
    runner = DaemonRunner(tmp_path, fake_api)
    yield runner
    if runner.proc is not None:
        code = runner.stop()
        assert code == 0, runner.log()[-3000:]
    assert_key_nowhere(tmp_path)


def assert_key_nowhere(root: Path) -> None:
    """The API key must not reach logs, sidecars, the database or any other file."""
    for path in root.rglob("*"):
        if path.is_file() and path.name != "api-key":
            assert TEST_KEY.encode() not in path.read_bytes(), f"API key leaked into {path}"


# -- the quick inner loop: ./dev.sh test -m "not e2e" --------------------------------------

E2E_MODULES = {"test_kill", "test_unit_file"}  # real daemons / systemd-analyze throughout


def pytest_collection_modifyitems(config, items) -> None:
    """Mark every test that runs real daemons (or systemd tools) as ``e2e``.

    By fixture and module rather than by hand, so a new end-to-end test cannot
    slip into the quick loop unmarked: it either uses ``daemon``, lives in a
    ``*_e2e.py`` module, or carries ``@pytest.mark.e2e`` itself.
    """
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module else ""
        if ("daemon" in getattr(item, "fixturenames", ())
                or module.endswith("_e2e") or module in E2E_MODULES):
            item.add_marker(pytest.mark.e2e)
