"""Kill tests: SIGKILL the real daemon at random moments, restart it, and check that no
file was lost, uploaded twice, left half-moved or left behind as a temporary file.

Every failure message names its seed; ``WATCHERD_KILL_SEED=<n>`` replays its schedule
(batches, faults, kill targets and delays). Thread timing still varies, so a replay hits
the same phases, not always the same instruction.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

import pytest

from tests.conftest import DaemonRunner, wait_for
from watcherd.ingest.mover import TEMP_PREFIX
from watcherd.simulator import FakeTwelveLabs
from watcherd.simulator.clips import make_video

pytestmark = pytest.mark.timeout(300)

FILES = 24
FIRST_BATCH = 8
PLANNED_ROUNDS = ("settling", "uploading", "indexing", "finalizing", "startup", "random")
# Phases a kill must have hit at least once across the rounds (row states at the kill).
PHASES = ("settling", "uploading", "indexing", "finalizing")
# The log line (written right after the state change commits) each targeted kill follows,
# and how long after it the kill comes: shorter than the phase lasts in this setup.
TRIGGERS = {"uploading": " -> uploading", "indexing": " -> indexing",
            "finalizing": " -> finalizing"}
KILL_AFTER = {"uploading": (0.0, 0.2), "indexing": (0.0, 0.8), "finalizing": (0.0, 0.003),
              "settling": (0.05, 0.4), "startup": (0.0, 0.3), "random": (0.1, 3.0)}
# Tasks stay "indexing" for about a second, so polls overlap kills.
PROGRESSION = (("validating", 0.0), ("pending", 0.1), ("indexing", 0.2), ("ready", 1.2))
# Each upload stalls half way through its body this long. A kill during the stall lets
# the rest through, so the task appears after the daemon died; the stall must end before
# the restarted daemon (start + settle, about 0.75 s) asks the API whether it exists.
PROXY_PAUSE = (0.2, 0.45)
SQLITE_FILES = {"state/state.db-wal", "state/state.db-shm"}  # SQLite's, may remain


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- a proxy that stalls uploads ----------------------------------------------------------


@dataclass
class ProxiedPost:
    stall_at: int            # request bytes forwarded before the stall
    length: int | None       # head + body, from Content-Length
    read: int = 0            # bytes read from the daemon so far
    stalled: bool = False

    @classmethod
    def from_head(cls, chunk: bytes) -> ProxiedPost:
        end = chunk.find(b"\r\n\r\n")
        head_len = end + 4 if end >= 0 else len(chunk)
        body_len = None
        for line in chunk[:head_len].split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                body_len = int(value)
        # Half the body, at most 1 MiB in: far less than a big file, so its sender blocks.
        body_part = min(body_len // 2, 1 << 20) if body_len else 1024
        return cls(head_len + max(1, body_part), head_len + body_len if body_len else None)


class UploadProxy:
    """A loopback TCP proxy in front of the fake API that stalls every POST half way.

    The fake reads a body as fast as it arrives, so without this a kill could never land
    while the API holds half an upload. ``pause()`` gives each stall in seconds, or None
    to hold it until ``resume()``. HTTP/1.1 clients never pipeline, so a chunk that
    starts with ``POST `` starts a new request.
    """

    def __init__(self, upstream: str, pause: Callable[[], float | None]) -> None:
        parts = urlsplit(upstream)
        self.target = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.base_path = parts.path
        self.pause = pause
        self.posts: list[ProxiedPost] = []
        self.held = threading.Event()
        self._resume = threading.Event()
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)  # so the accept loop notices close()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}{self.base_path}"

    def __enter__(self) -> Self:
        self._spawn(self._accept_loop)
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()
        with self._lock:
            sockets, threads = list(self._sockets), list(self._threads)
        for sock in sockets:
            _shutdown(sock)
        for thread in threads:
            thread.join(5)
        self._listener.close()

    def resume(self) -> None:
        """Let a held upload go on; later uploads pass without a stall."""
        self.pause = lambda: 0.0
        self._resume.set()

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name="kill-proxy", daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            self._spawn(self._serve, client)

    def _serve(self, client: socket.socket) -> None:
        try:
            server = socket.create_connection(self.target)
        except OSError:
            client.close()
            return
        with self._lock:
            self._sockets += [client, server]
        down = threading.Thread(target=_pump, args=(server, client), name="kill-proxy-down",
                                daemon=True)
        down.start()
        self._pump_up(client, server)
        down.join()
        client.close()
        server.close()

    def _pump_up(self, client: socket.socket, server: socket.socket) -> None:
        post: ProxiedPost | None = None
        try:
            while chunk := client.recv(1 << 16):
                if chunk.startswith(b"POST "):
                    post = ProxiedPost.from_head(chunk)
                    with self._lock:
                        self.posts.append(post)
                if post is not None:
                    chunk = self._forward_until_stall(post, chunk, server)
                server.sendall(chunk)
        except OSError:
            pass
        _shutdown(server, socket.SHUT_WR)

    def _forward_until_stall(self, post: ProxiedPost, chunk: bytes,
                             server: socket.socket) -> bytes:
        """Forward up to the stall point, stall, and return what is left to send."""
        before, post.read = post.read, post.read + len(chunk)
        if post.stalled or post.read <= post.stall_at:
            return chunk
        cut = post.stall_at - before
        server.sendall(chunk[:cut])
        post.stalled = True
        pause = self.pause()
        if pause is None:
            self.held.set()
            while not (self._resume.wait(0.05) or self._closing.is_set()):
                pass
        else:
            self._closing.wait(pause)
        return chunk[cut:]


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while chunk := source.recv(1 << 16):
            sink.sendall(chunk)
    except OSError:
        pass
    _shutdown(sink, socket.SHUT_WR)


def _shutdown(sock: socket.socket, how: int = socket.SHUT_RDWR) -> None:
    try:
        sock.shutdown(how)
    except OSError:
        pass


# -- watching the daemon ------------------------------------------------------------------


class LogTail:
    """Reads daemon.log as it grows, so a kill can follow a state change within ~1 ms."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = b""

    def skip_to_end(self) -> None:
        self.offset = self.path.stat().st_size if self.path.exists() else 0
        self.partial = b""

    def wait_for(self, needle: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self._new_lines():
                return True
            time.sleep(0.001)
        return False

    def _new_lines(self) -> str:
        if not self.path.exists():
            return ""
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            data = fh.read()
        self.offset += len(data)
        data = self.partial + data
        complete, _, self.partial = data.rpartition(b"\n")
        return complete.decode("utf-8", "replace")


def row_states(db: Path) -> Counter[str]:
    """State of every row, read straight from the database (the daemon may be dead)."""
    if not db.exists():
        return Counter()
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return Counter(state for (state,) in conn.execute("SELECT state FROM files"))


def start_and_wait(daemon: DaemonRunner) -> None:
    """``DaemonRunner.start`` only waits for the first start: the log keeps older lines."""
    before = daemon.log().count("watcherd started")
    daemon.start()
    wait_for(lambda: daemon.log().count("watcherd started") > before
             or daemon.proc.poll() is not None, timeout=30, what="daemon restart")
    assert daemon.proc.poll() is None, daemon.log()[-3000:]


def write_slowly(source: Path, target: Path, rng: random.Random) -> None:
    """A writer slower than a kill and a restart, but never quiet for a settle period."""
    data = source.read_bytes()
    with open(target, "wb") as fh:
        for offset in range(0, len(data), 2048):
            fh.write(data[offset:offset + 2048])
            fh.flush()
            time.sleep(rng.uniform(0.02, 0.15))


# -- the random kill run ------------------------------------------------------------------


@dataclass
class Clip:
    name: str
    source: Path
    sha256: str


@dataclass
class KillRun:
    seed: int
    daemon: DaemonRunner
    fake: FakeTwelveLabs
    clips: list[Clip]
    rng: random.Random = field(init=False)
    pool: list[Clip] = field(init=False)
    tail: LogTail = field(init=False)
    hit: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)
    writers: list[threading.Thread] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.pool = list(self.clips)
        self.rng.shuffle(self.pool)
        self.tail = LogTail(self.daemon.log_path)

    @property
    def db(self) -> Path:
        return Path(self.daemon.settings["state_db"])

    def context(self) -> str:
        return (f"seed={self.seed} (replay: WATCHERD_KILL_SEED={self.seed})\nrounds:\n  "
                + "\n  ".join(self.notes) + f"\nlog tail:\n{self.daemon.log()[-6000:]}")

    # -- dropping files --

    def drop(self, count: int, slow: bool = False) -> None:
        batch, self.pool = self.pool[:count], self.pool[count:]
        for n, clip in enumerate(batch):
            if slow and n == 0:
                writer = threading.Thread(target=write_slowly, name="kill-writer", args=(
                    clip.source, self.daemon.inbox / clip.name, random.Random(self.rng.random())))
                writer.start()
                self.writers.append(writer)
            else:
                shutil.copy(clip.source, self.daemon.inbox / clip.name)

    def inject_faults(self) -> None:
        """Uploads that hang and then fail, or whose task is made but the answer lost."""
        delay = self.rng.uniform(0.3, 0.8)
        fault = self.rng.choice(("none", "slow_refusal", "answer_lost"))
        if fault == "slow_refusal":  # Retry-After 0: retried at once, no backoff
            self.fake.inject("POST", "/tasks", status=503, body=None,
                             headers={"Retry-After": "0"}, delay=delay)
        elif fault == "answer_lost":
            self.fake.inject("POST", "/tasks", action="create_then_reset", delay=delay)

    # -- rounds --

    def plan(self) -> list[str]:
        rounds = list(PLANNED_ROUNDS)
        self.rng.shuffle(rounds)
        if rounds[0] == "startup":  # the first start has no earlier state to recover
            rounds[0], rounds[1] = rounds[1], rounds[0]
        return rounds

    def round(self, number: int, target: str) -> None:
        self.tail.skip_to_end()
        if target == "startup":
            self.daemon.start()  # returns at once: the log already says "watcherd started"
        else:
            start_and_wait(self.daemon)
        self.inject_faults()
        if self.pool and number > 0:
            self.drop(self.rng.randint(1, 2), slow=target == "settling" and not self.writers)
        waited = self._wait_for_moment(target)
        code = self.daemon.stop(signal.SIGKILL)
        assert code == -signal.SIGKILL, f"daemon exited by itself ({code})\n{self.context()}"
        states = row_states(self.db)
        hit = {s for s in PHASES if states[s]} | self._half_moved()
        self.hit |= hit
        self.notes.append(f"round {number}: target {target}, {waited}; at the kill "
                          f"{dict(states)}; hit {sorted(hit)}")

    def _wait_for_moment(self, target: str) -> str:
        low, high = KILL_AFTER[target]
        seen = ""
        if target in TRIGGERS:
            found = self.tail.wait_for(TRIGGERS[target], timeout=8)
            seen = "after its log line, " if found else "its log line never came, "
        delay = self.rng.uniform(low, high)
        time.sleep(delay)
        return f"{seen}killed {delay * 1000:.0f} ms later"

    def _half_moved(self) -> set[str]:
        """A media file in done/ without its sidecar is a kill during the move too."""
        done = self.daemon.done
        names = {p.name for p in done.iterdir()} if done.is_dir() else set()
        media = {n for n in names if not n.endswith(".json")}
        return {"finalizing"} if any(f"{n}.json" not in names for n in media) else set()

    def finish(self) -> None:
        """Drop the rest, then let one run finish everything and stop it cleanly."""
        self.drop(len(self.pool))
        for writer in self.writers:
            writer.join(30)
        self.daemon.settings["api"]["base_url"] = self.fake.base_url  # no more stalls
        start_and_wait(self.daemon)
        wait_for(self._all_done, timeout=60, what=lambda: f"every file done\n{self.context()}")
        code = self.daemon.stop(signal.SIGTERM)
        assert code == 0, f"SIGTERM exit code {code}\n{self.context()}"

    def _all_done(self) -> bool:
        sidecars = all((self.daemon.done / f"{c.name}.json").exists() for c in self.clips)
        return sidecars and row_states(self.db) == Counter({"done": len(self.clips)})


def make_clips(distinct_clips: Callable[[int], list[Path]]) -> list[Clip]:
    return [Clip(f"take-{n:02d}.mp4", path, sha256(path))
            for n, path in enumerate(distinct_clips(FILES))]


# CI replays the same schedule every run, so a red run can be reproduced exactly;
# elsewhere each run tries a new one (and prints it).
CI_KILL_SEED = 20261202


def kill_seed() -> int:
    if os.environ.get("WATCHERD_KILL_SEED"):
        return int(os.environ["WATCHERD_KILL_SEED"])
    if os.environ.get("CI"):
        return CI_KILL_SEED
    return time.time_ns() % 1_000_000


def test_random_sigkills_lose_nothing_and_upload_each_file_once(
        daemon: DaemonRunner, fake_api: FakeTwelveLabs,
        distinct_clips: Callable[[int], list[Path]]) -> None:
    seed = kill_seed()
    print(f"kill test seed: {seed}")
    clips = make_clips(distinct_clips)
    assert len({c.sha256 for c in clips}) == FILES, "the clips must differ (dedupe)"
    fake_api.set_progression(PROGRESSION)
    daemon.settings["upload_workers"] = 2
    run = KillRun(seed, daemon, fake_api, clips)
    with UploadProxy(fake_api.base_url, lambda: run.rng.uniform(*PROXY_PAUSE)) as proxy:
        daemon.settings["api"]["base_url"] = proxy.base_url
        run.drop(FIRST_BATCH)
        rounds = run.plan()
        # Extra rounds, each with new files, aim at a phase no kill has hit yet.
        while rounds or (run.pool and not run.hit.issuperset(PHASES)):
            missing = [p for p in PHASES if p not in run.hit]
            run.round(len(run.notes), rounds.pop(0) if rounds else run.rng.choice(missing))
        run.finish()
    print("\n".join(run.notes))  # with -s: where the kills landed
    assert run.hit.issuperset(PHASES), f"no kill landed in {set(PHASES) - run.hit}\n" \
                                       f"{run.context()}"
    check_outcome(run)


# -- the verdict ------------------------------------------------------------------------


def check_outcome(run: KillRun) -> None:
    # Leftovers last: when only they fail, everything else above held.
    context = run.context()
    sidecars = check_done_folder(run, context)
    check_tasks(run, sidecars, context)
    rows = run.daemon.status()
    assert sorted((r["path"], r["state"], r["task_id"]) for r in rows) == sorted(
        (str(run.daemon.inbox / c.name), "done", sidecars[c.name]["task_id"])
        for c in run.clips), context
    assert run.fake.errors == [], context
    assert "Traceback" not in run.daemon.log(), context
    check_leftovers(run, context)


def check_done_folder(run: KillRun, context: str) -> dict[str, dict[str, Any]]:
    """Every file in done/ exactly once, whole, with a sidecar that says ready."""
    done = run.daemon.done
    expected = {c.name for c in run.clips} | {f"{c.name}.json" for c in run.clips}
    visible = {p.name for p in done.iterdir() if not p.name.startswith(".")}
    assert visible == expected, context  # hidden temporaries: check_leftovers
    sidecars = {}
    for clip in run.clips:
        assert sha256(done / clip.name) == clip.sha256, f"{clip.name} damaged\n{context}"
        side = json.loads((done / f"{clip.name}.json").read_text())
        assert side["status"] == "ready" and side["sha256"] == clip.sha256, (side, context)
        assert side["source_path"] == str(run.daemon.inbox / clip.name), (side, context)
        assert side["moved_to"] == str(done / clip.name), (side, context)
        sidecars[clip.name] = side
    return sidecars


def check_tasks(run: KillRun, sidecars: dict[str, dict[str, Any]], context: str) -> None:
    """One task per file, each the one its sidecar names, holding that file's bytes."""
    tasks = run.fake.tasks
    per_content = Counter(task["sha256"] for task in tasks.values())
    assert per_content == Counter(c.sha256 for c in run.clips), \
        f"tasks per content {per_content}\n{context}"
    assert len(tasks) == len(run.clips), context
    for clip in run.clips:
        task = tasks.get(sidecars[clip.name]["task_id"])
        assert task is not None, f"{clip.name}: sidecar names an unknown task\n{context}"
        assert (task["sha256"], task["filename"]) == (clip.sha256, clip.name), context
    answered = Counter(u.file.sha256 for u in run.fake.uploads())
    assert all(n == 1 for n in answered.values()), f"created twice: {answered}\n{context}"


def check_leftovers(run: KillRun, context: str) -> None:
    """Nothing in the inbox but done/ (and an empty failed/); no stray file anywhere."""
    inbox = run.daemon.inbox
    assert {p.name for p in inbox.iterdir()} <= {"done", "failed"}, context
    assert not run.daemon.failed.exists() or not any(run.daemon.failed.iterdir()), context
    root = run.daemon.root
    present = {str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir()}
    temporary = sorted(p for p in present if Path(p).name.startswith(TEMP_PREFIX))
    assert not temporary, f"temporary files left behind: {temporary}\n{context}"
    expected = {"config.yaml", "daemon.log", "state/state.db", "state/state.db.lock"}
    expected |= {f"inbox/done/{c.name}" for c in run.clips}
    expected |= {f"inbox/done/{c.name}.json" for c in run.clips}
    assert present - SQLITE_FILES == expected, \
        f"unexpected: {sorted(present - SQLITE_FILES - expected)}, " \
        f"missing: {sorted(expected - present)}\n{context}"


# -- one deterministic kill half way through a body ---------------------------------------


def padded_clip(directory: Path, pad_bytes: int = 16 << 20) -> Path:
    """A valid clip made big with a trailing MP4 ``free`` box (players skip it), so an
    upload cannot fit in the socket buffers and its sender blocks half way."""
    path = directory / f"kill-padded-{pad_bytes >> 20}m.mp4"
    if not path.exists():
        staging = make_video(directory / f"{path.name}.staging.mp4")
        with open(staging, "ab") as fh:
            fh.write(struct.pack(">I4s", pad_bytes + 8, b"free"))
            fh.write(bytes(pad_bytes))
        os.replace(staging, path)
    return path


def test_killed_half_way_through_a_body_uploads_once_after_restart(
        daemon: DaemonRunner, fake_api: FakeTwelveLabs, clip_dir: Path) -> None:
    big = padded_clip(clip_dir)
    with UploadProxy(fake_api.base_url, lambda: None) as proxy:
        daemon.settings["api"]["base_url"] = proxy.base_url
        start_and_wait(daemon)
        shutil.copy(big, daemon.inbox / "big.mp4")
        wait_for(proxy.held.is_set, timeout=20, what=lambda: daemon.log()[-3000:])
        (post,) = proxy.posts
        # The daemon had sent 1 MiB of 16: it was blocked in the middle of the body.
        assert post.length is not None and post.read < post.length // 2, post
        assert row_states(Path(daemon.settings["state_db"])) == Counter({"uploading": 1})
        assert daemon.stop(signal.SIGKILL) == -signal.SIGKILL
        proxy.resume()  # the API now sees the body end early: the client died
        wait_for(lambda: fake_api.count("POST", "/tasks") == 1, what="the torn upload")
        assert fake_api.tasks == {}
        start_and_wait(daemon)
        side = daemon.sidecar(daemon.wait_done("big.mp4", timeout=30))
        assert daemon.stop() == 0
    (task_id,) = fake_api.tasks
    assert side["task_id"] == task_id and side["attempts"] == 2
    assert side["sha256"] == sha256(big) == fake_api.tasks[task_id]["sha256"]
    assert [r.status for r in fake_api.requests if r.method == "POST"] == [0, 200]
    # Killed mid-body, nobody knows how far the body got: it looked before sending again.
    posts = [i for i, r in enumerate(fake_api.requests) if r.method == "POST"]
    looks = [i for i, r in enumerate(fake_api.requests)
             if r.method == "GET" and r.query.get("filename") == ["big.mp4"]]
    assert looks and posts[0] < looks[0] < posts[1]
    assert fake_api.errors == []
