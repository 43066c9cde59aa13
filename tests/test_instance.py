"""One daemon per drop folder, whatever the database; and one database the service and
its operator agree on.

The lock holders are real processes (flock is per process here: a lock held by
this test process would count as our own).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import DaemonRunner
from watcherd.config import Config, load_config
from watcherd.errors import ConfigError
from watcherd.intake.filters import ignore_reason
from watcherd.intake.presence import folder_reachable
from watcherd.state.instance import FOLDER_LOCK_NAME, AlreadyRunning, InstanceLock, holder_of

HOLD = """
import sys
from watcherd.config import load_config
from watcherd.state.instance import InstanceLock
lock = InstanceLock(load_config(sys.argv[1])).acquire()
print("held", flush=True)
sys.stdin.read()
"""


def config_file(root: Path, name: str, *folders: dict[str, Any]) -> Path:
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"state_db": str(root / name / "state.db"),
                                    "folders": [{"index_id": "idx", **f} for f in folders]}))
    return path


class Holders:
    """Other processes holding a config's locks, like another daemon would."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def hold(self, config: Path) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", HOLD, str(config)], text=True,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline() == "held\n"
        return proc

    def close(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait()
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()


@pytest.fixture
def holders() -> Iterator[Holders]:
    found = Holders()
    yield found
    found.close()


def acquire(path: Path) -> InstanceLock:
    return InstanceLock(load_config(path, env={})).acquire()


def test_a_folder_held_with_another_database_is_refused_naming_pid_and_database(
        tmp_path, holders):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    first = holders.hold(config_file(tmp_path, "first", {"path": str(inbox)}))
    with pytest.raises(AlreadyRunning) as refused:
        acquire(config_file(tmp_path, "second", {"path": str(inbox)}))
    message = str(refused.value)
    assert f"pid {first.pid}" in message and str(tmp_path / "first" / "state.db") in message
    assert "folders[0].path" in message
    # The refused one let go of its own database again.
    acquire(config_file(tmp_path, "second", {"path": str(tmp_path)})).release()


def test_overlapping_trees_are_refused_both_ways(tmp_path, holders):
    share = tmp_path / "share"
    (share / "cam1").mkdir(parents=True)
    holders.hold(config_file(tmp_path, "tree", {"path": str(share), "recursive": True}))
    with pytest.raises(AlreadyRunning, match=r"inside .*share, which watcherd pid .* watches "
                                             r"recursively"):
        acquire(config_file(tmp_path, "inner", {"path": str(share / "cam1")}))

    other = tmp_path / "other"
    (other / "a" / "b").mkdir(parents=True)
    holders.hold(config_file(tmp_path, "deep", {"path": str(other / "a" / "b")}))
    with pytest.raises(AlreadyRunning, match=r"is recursive and contains .*b, which watcherd"):
        acquire(config_file(tmp_path, "outer", {"path": str(other), "recursive": True}))


def test_folders_that_do_not_overlap_run_side_by_side(tmp_path, holders):
    parent = tmp_path / "parent"
    (parent / "sub").mkdir(parents=True)
    (parent / ".hidden" / "x").mkdir(parents=True)
    holders.hold(config_file(tmp_path, "flat", {"path": str(parent)}))  # not recursive
    acquire(config_file(tmp_path, "sub", {"path": str(parent / "sub")})).release()
    tree = tmp_path / "tree"
    (tree / ".hidden" / "x").mkdir(parents=True)
    holders.hold(config_file(tmp_path, "tree", {"path": str(tree), "recursive": True}))
    # The tree's daemon ignores hidden subfolders: no file is seen twice.
    acquire(config_file(tmp_path, "hidden", {"path": str(tree / ".hidden" / "x")})).release()


def test_the_lock_file_goes_on_a_clean_stop_and_a_dead_holder_leaves_no_lock(
        tmp_path, holders):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    config = config_file(tmp_path, "a", {"path": str(inbox)})
    lock = acquire(config)
    described = json.loads((inbox / FOLDER_LOCK_NAME).read_text())
    assert described == {"pid": os.getpid(), "state_db": str(tmp_path / "a" / "state.db"),
                         "recursive": False, "host": socket.gethostname()}
    lock.release()
    assert not (inbox / FOLDER_LOCK_NAME).exists()

    killed = holders.hold(config)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert (inbox / FOLDER_LOCK_NAME).exists() and holder_of(inbox) is None
    acquire(config).release()  # the kernel dropped the dead one's lock
    assert not (inbox / FOLDER_LOCK_NAME).exists()


def test_a_planted_symlink_is_not_followed(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    victim = tmp_path / "precious.txt"
    victim.write_text("do not truncate me")
    (inbox / FOLDER_LOCK_NAME).symlink_to(victim)
    with pytest.raises(ConfigError, match=r"folders\[0\]\.path: cannot create the lock file"):
        acquire(config_file(tmp_path, "a", {"path": str(inbox)}))
    assert victim.read_text() == "do not truncate me"


def test_a_reload_that_adds_a_held_folder_changes_nothing(tmp_path, holders):
    mine, theirs = tmp_path / "mine", tmp_path / "theirs"
    mine.mkdir()
    theirs.mkdir()
    holders.hold(config_file(tmp_path, "theirs", {"path": str(theirs)}))
    config = load_config(config_file(tmp_path, "mine", {"path": str(mine)}), env={})
    lock = InstanceLock(config).acquire()
    try:
        extra = tmp_path / "extra"
        extra.mkdir()
        reloaded = load_config(config_file(tmp_path, "mine", {"path": str(mine)},
                                           {"path": str(extra)}, {"path": str(theirs)}), env={})
        with pytest.raises(AlreadyRunning, match=r"folders\[2\]\.path"):
            lock.hold(reloaded)
        assert not (extra / FOLDER_LOCK_NAME).exists()  # taken and given back
        assert (mine / FOLDER_LOCK_NAME).exists()
        lock.hold(load_config(config_file(tmp_path, "mine", {"path": str(extra)}), env={}))
        assert not (mine / FOLDER_LOCK_NAME).exists() and (extra / FOLDER_LOCK_NAME).exists()
    finally:
        lock.release()


def test_the_lock_file_is_never_a_candidate_nor_content(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    config: Config = load_config(config_file(tmp_path, "a", {
        "path": str(inbox), "extensions": [".mp4", ".lock"]}), env={})
    assert ignore_reason(inbox / FOLDER_LOCK_NAME, config.folders[0]) == \
        "watcherd's folder lock (one daemon per folder)"
    (inbox / FOLDER_LOCK_NAME).write_text("{}")
    # An unmounted share's mount point holding only our lock is still out of reach.
    assert not folder_reachable(inbox)
    (inbox / "clip.mp4").write_bytes(b"x")
    assert folder_reachable(inbox)


# -- real daemons -------------------------------------------------------------------------


def test_a_second_daemon_with_another_database_on_the_same_folder_exits_1(
        daemon, fake_api, valid_clip):
    daemon.start()
    second = dict(daemon.settings, state_db=str(daemon.root / "second" / "state.db"))
    config = daemon.root / "second.yaml"
    config.write_text(yaml.safe_dump(second))
    result = subprocess.run([sys.executable, "-m", "watcherd", "run", "-c", str(config)],
                            capture_output=True, text=True, env=daemon.env, timeout=60)
    assert result.returncode == 1, result.stderr
    assert f"watcherd pid {daemon.proc.pid}" in result.stderr
    assert daemon.settings["state_db"] in result.stderr
    # status with the other config says which daemon runs the folder, and where to look.
    status = subprocess.run([sys.executable, "-m", "watcherd", "status", "-c", str(config)],
                            capture_output=True, text=True, env=daemon.env, timeout=60)
    assert f"is run by watcherd pid {daemon.proc.pid} (database " \
           f"{daemon.settings['state_db']})" in status.stderr
    shutil.copy(valid_clip, daemon.inbox / "once.mp4")
    daemon.wait_done("once.mp4")
    assert len(fake_api.uploads()) == 1
    assert (daemon.inbox / FOLDER_LOCK_NAME).exists()
    assert daemon.stop() == 0
    assert not (daemon.inbox / FOLDER_LOCK_NAME).exists()  # nothing left in the drop folder


# The service and its operator: same config, different users, homes and environments.
AS_SYSTEM_CONFIG = """
import sys
from pathlib import Path
import watcherd.config as config
config.SYSTEM_CONFIG_DIR = Path(sys.argv.pop(1))  # as if it were /etc/watcherd
config.SYSTEM_STATE_DB = Path(sys.argv.pop(1))    # ... and /var/lib/watcherd/state.db
from watcherd.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.e2e  # real daemons or seconds of real deadlines
def test_the_operator_finds_the_service_database_with_the_shipped_config(
        tmp_path, fake_api, valid_clip):
    service = DaemonRunner(tmp_path, fake_api)
    del service.settings["state_db"]  # as shipped
    state_directory = tmp_path / "var-lib-watcherd"
    wrapper = [sys.executable, "-c", AS_SYSTEM_CONFIG, str(tmp_path),
               str(state_directory / "state.db")]
    service.command = wrapper
    (tmp_path / "service-home").mkdir()
    service.env.update(STATE_DIRECTORY=str(state_directory),
                       HOME=str(tmp_path / "service-home"))
    operator = {k: v for k, v in service.env.items() if k != "STATE_DIRECTORY"}
    operator["HOME"] = str(tmp_path / "operator-home")
    service.start()
    try:
        shutil.copy(valid_clip, service.inbox / "seen.mp4")
        service.wait_done("seen.mp4")

        def as_operator(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run([*wrapper, *args, "-c", str(tmp_path / "config.yaml")],
                                  capture_output=True, text=True, env=operator, timeout=60)

        status = as_operator("status")
        assert status.returncode == 0, status.stderr
        assert f"daemon running (pid {service.proc.pid}" in status.stdout
        listed = as_operator("list", "--json")
        assert '"state": "done"' in listed.stdout, listed.stderr
        second = as_operator("run")
        assert second.returncode == 1 and f"pid {service.proc.pid}" in second.stderr
        assert str(state_directory / "state.db") in second.stderr
    finally:
        assert service.stop() == 0, service.log()[-3000:]
    assert not (service.inbox / FOLDER_LOCK_NAME).exists()
