"""A file the service user may not read waits in the inbox, says why once, and goes on by itself.

The permission check is real whenever it can be: as an ordinary user, or as
root (CI, which reads anything) by running the daemon as ``nobody`` in a tree
``nobody`` owns. Where ``nobody`` cannot start this Python at all (it lives
in root's private home), the daemon runs as root with the check put back at
its open calls (tests/unprivileged_daemon.py).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import DaemonRunner, assert_key_nowhere, wait_for

HERE = Path(__file__).parent


@pytest.fixture
def unprivileged_daemon(fake_api) -> Iterator[DaemonRunner]:
    root = Path(tempfile.mkdtemp(prefix="watcherd-unreadable-"))
    runner = DaemonRunner(root, fake_api)
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        as_nobody = {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}
        if _can_run(as_nobody):
            for path in (root, runner.inbox):
                os.chown(path, nobody.pw_uid, nobody.pw_gid)
            runner.popen_options = as_nobody
        else:
            runner.command = [sys.executable, str(HERE / "unprivileged_daemon.py")]
    try:
        yield runner
        if runner.proc is not None:
            assert runner.stop() == 0, runner.log()[-3000:]
        assert_key_nowhere(root)
    finally:
        if runner.proc is not None:
            runner.stop()
        shutil.rmtree(root, ignore_errors=True)


def _can_run(options: dict) -> bool:
    try:
        probe = subprocess.run([sys.executable, "-c", "import watcherd.service.daemon"],
                               capture_output=True, timeout=60, check=False, **options)
    except PermissionError:  # the interpreter itself is out of reach
        return False
    return probe.returncode == 0


def test_an_unreadable_file_waits_in_the_inbox_and_is_taken_once_readable(
        unprivileged_daemon, fake_api, valid_clip):
    daemon = unprivileged_daemon
    daemon.start()
    hidden = daemon.inbox / ".locked.mp4"  # prepared under a name the daemon ignores
    shutil.copy(valid_clip, hidden)
    hidden.chmod(0)
    source = daemon.inbox / "locked.mp4"
    hidden.rename(source)
    warning = f"{source}: cannot read it as user"
    wait_for(lambda: warning in daemon.log(), 20, lambda: daemon.log()[-3000:])
    assert "let the service user read it" in daemon.log()
    explained = daemon.command_json("explain", str(source))
    assert explained["status"] == "unreadable", explained
    (folder,) = daemon.command_json("status")["folders"]
    assert [u["path"] for u in folder["unreadable"]] == [str(source)]
    assert "Permission denied" in folder["unreadable"][0]["reason"]
    rescans = daemon.log().count("scanned ")
    wait_for(lambda: daemon.log().count("scanned ") >= rescans + 2, 20, "two more rescans")
    assert daemon.log().count(warning) == 1  # said once, not at every look
    assert source.exists() and fake_api.uploads() == []
    assert not daemon.failed.exists() or list(daemon.failed.iterdir()) == []

    source.chmod(0o644)
    moved = daemon.wait_done("locked.mp4")
    assert daemon.sidecar(moved)["status"] == "ready" and len(fake_api.uploads()) == 1
    (row,) = daemon.status()
    assert row["state"] == "done" and row["reason"] is None


def test_a_file_that_turns_unreadable_during_validation_goes_back_to_settling(
        tmp_path, valid_clip, monkeypatch):
    """The settler checked it, then the permissions changed: still no "not decodable"."""
    import errno
    import queue

    import av

    from watcherd.config import parse_config
    from watcherd.ingest.gate import UploadGate
    from watcherd.ingest.upload import UploadWorker
    from watcherd.state.states import State
    from watcherd.state.store import Store

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    config = parse_config({"folders": [{"path": str(inbox), "index_id": "idx"}]},
                          base_dir=tmp_path, env={})
    store = Store(tmp_path / "state.db").open()
    source = inbox / "clip.mp4"
    shutil.copy(valid_clip, source)
    st = source.stat()
    record = store.add(path=str(source), folder=str(inbox), index_id="idx",
                       state=State.QUEUED, size=st.st_size, mtime_ns=st.st_mtime_ns)

    def refused(path, *args, **kwargs):  # what FFmpeg's EACCES becomes in PyAV
        raise av.error.PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    monkeypatch.setattr(av, "open", refused)
    finalized: list[int] = []
    resettled: list[str] = []
    worker = UploadWorker("upload-1", config=config, store=store, api=None,  # type: ignore[arg-type]
                          gate=UploadGate(rng=lambda: 0.0), work=queue.Queue(),
                          finalize=finalized.append, settle_again=resettled.append)
    try:
        worker.process(record.id)
        row = store.get(record.id)
        assert (row.state, row.outcome, finalized) == (State.SETTLING, None, [])
        assert resettled == [str(source)] and "Permission denied" in \
            store.history(record.id)[-1]["detail"]
    finally:
        store.close()
