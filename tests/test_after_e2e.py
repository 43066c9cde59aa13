"""``folders[].after``, end to end: sources left in place (a read-only mount) or deleted.

``leave`` on a read-only folder: ingested in place, nothing written there,
never uploaded again after a restart or a rebuilt database, and a changed
file is a new version. ``delete``: the source goes only once its task is
ready and its sidecar written; a failed file is moved to failed/.

Read-only: as root (where the write bit stops nothing) the folder is a
read-only bind mount of a writable one; as another user, a folder with its
write bits removed. Where neither can be set up, the test is skipped, saying why.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import wait_for
from watcherd.exitcodes import EXIT_CONFIG
from watcherd.simulator.clips import make_video


class ReadOnlySource:
    """A folder the daemon cannot write to, and a way for the test to put files in it."""

    def __init__(self, writable: Path, watched: Path) -> None:
        self.writable = writable
        self.watched = watched

    def put(self, content: Path, relative: str) -> Path:
        target = self.writable / relative
        with self._opened(target.parent):
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(content, target)
        return self.watched / relative

    def _opened(self, folder: Path):
        if self.writable != self.watched:  # the bind mount's source is writable as is
            return _Nothing()
        return _WriteBits(self.watched, folder)

    def listing(self) -> list[str]:
        return sorted(str(p.relative_to(self.watched)) for p in self.watched.rglob("*"))


class _Nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


class _WriteBits:
    """Write bits on for the tree while the test writes, then off again."""

    def __init__(self, top: Path, folder: Path) -> None:
        self.top, self.folder = top, folder

    def __enter__(self) -> None:
        for d in [self.top, *self.top.rglob("*")]:
            if d.is_dir():
                d.chmod(0o755)

    def __exit__(self, *exc: object) -> None:
        for d in [*self.top.rglob("*"), self.top]:
            if d.is_dir():
                d.chmod(0o555)


@pytest.fixture
def read_only_source(tmp_path) -> Iterator[ReadOnlySource]:
    writable, watched = tmp_path / "archive-rw", tmp_path / "archive"
    writable.mkdir()
    watched.mkdir()
    if os.geteuid() != 0:
        watched.chmod(0o555)
        yield ReadOnlySource(watched, watched)
        for d in [watched, *watched.rglob("*")]:
            if d.is_dir():
                d.chmod(0o755)
        return
    bound = subprocess.run(["mount", "--bind", str(writable), str(watched)],
                           capture_output=True, text=True)
    if bound.returncode != 0:
        pytest.skip(f"running as root, where the write bit stops nothing, and a read-only "
                    f"bind mount is not allowed here ({bound.stderr.strip()})")
    sealed = subprocess.run(["mount", "-o", "remount,ro,bind", str(watched)],
                            capture_output=True, text=True)
    try:
        if sealed.returncode != 0:
            pytest.skip(f"cannot remount the bind mount read-only ({sealed.stderr.strip()})")
        probe = watched / ".probe"
        with pytest.raises(OSError):
            probe.write_text("x")
        yield ReadOnlySource(writable, watched)
    finally:
        subprocess.run(["umount", "-l", str(watched)], check=True)


def test_leave_ingests_a_read_only_source_once_across_restart_and_rebuild(
        daemon, fake_api, distinct_clips, read_only_source):
    first, second = distinct_clips(2)
    source = read_only_source
    clip = source.put(first, "shoot/clip.mp4")
    meta = source.writable / "shoot" / "clip.mp4.meta.json"
    meta.write_text('{"reel": "7"}')
    records = daemon.root / "records"
    daemon.settings["folders"] = [{"path": str(source.watched), "index_id": "idx_test",
                                   "recursive": True, "after": "leave",
                                   "records_dir": str(records)}]
    before = source.listing()
    daemon.start()
    record = records / "shoot" / "clip.mp4.json"
    wait_for(record.exists, 20, daemon.log)
    sidecar = json.loads(record.read_text())
    assert sidecar["status"] == "ready" and sidecar["after"] == "leave"
    assert sidecar["moved_to"] == sidecar["source_path"] == str(clip)
    assert sidecar["user_metadata"]["reel"] == "7"
    assert sidecar["metadata_file"] == f"{clip}.meta.json"
    assert source.listing() == before  # nothing renamed, written or removed there
    assert "watched unlocked" in daemon.log()
    assert len(fake_api.uploads()) == 1

    ignored = f"ignoring {clip}: already ingested and left in place"
    for restart in ("restart", "rebuild"):
        assert daemon.stop() == 0
        if restart == "rebuild":
            db = Path(daemon.settings["state_db"])
            db.write_bytes(b"this is not a database" * 100)
            Path(f"{db}-wal").unlink(missing_ok=True)
        daemon.log_path.write_text("")
        daemon.start()
        wait_for(lambda: ignored in daemon.log(), 15, daemon.log)
        assert len(fake_api.uploads()) == 1, restart
    assert "is damaged" in daemon.log()

    source.put(second, "shoot/clip.mp4")  # a new version of the same path
    wait_for(lambda: len(fake_api.uploads()) == 2, 20, daemon.log)
    wait_for(lambda: json.loads(record.read_text())["task_id"] ==
             fake_api.uploads()[1].task_id, 20, daemon.log)
    assert source.listing() == before

    # delete is refused at load for a read-only folder.
    daemon.settings["folders"][0].update(after="delete", records_dir=str(records))
    checked = subprocess.run([sys.executable, "-m", "watcherd", "check-config", "-c",
                              str(daemon.write_config())], capture_output=True, text=True,
                             env=daemon.env, timeout=60)
    assert checked.returncode == EXIT_CONFIG
    assert f"folders[0].after: delete, but {source.watched} is read-only" in checked.stderr


def test_delete_removes_the_source_only_once_ready_and_recorded(daemon, fake_api,
                                                                distinct_clips, clip_dir):
    (clip,) = distinct_clips(1)
    daemon.settings["folders"][0]["after"] = "delete"
    fake_api.set_progression((("indexing", 0.0), ("ready", 2.0)))
    daemon.start()
    source = daemon.inbox / "clip.mp4"
    meta = daemon.inbox / "clip.mp4.meta.json"
    meta.write_text('{"reel": "7"}')
    shutil.copy(clip, source)
    short = make_video(clip_dir / "after-short-3s.mp4", seconds=3)
    shutil.copy(short, daemon.inbox / "short.mp4")
    wait_for(lambda: "clip.mp4: uploading -> indexing" in daemon.log(), 20, daemon.log)
    assert source.exists() and meta.exists()  # indexing, not ready: kept
    record = daemon.done / "clip.mp4.json"
    wait_for(record.exists, 20, daemon.log)
    wait_for(lambda: not source.exists(), 5, daemon.log)
    assert not meta.exists() and not (daemon.done / "clip.mp4").exists()
    sidecar = json.loads(record.read_text())
    assert sidecar["status"] == "ready" and sidecar["after"] == "delete"
    assert sidecar["moved_to"] is None and sidecar["user_metadata"]["reel"] == "7"
    # A failure is not deleted: it goes to failed/ as with move.
    failed = daemon.wait_done("short.mp4", "failed")
    assert failed.exists() and daemon.sidecar(failed)["rule"] == "duration"
    assert daemon.stop(signal.SIGTERM) == 0
