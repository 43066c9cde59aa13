"""One daemon per state database, and one per drop folder.

Two daemons on one database would race for every file; two daemons on one
folder, even with two databases, would upload every file twice. So a daemon
holds, for its whole life, an exclusive ``flock`` on ``<state_db>.lock`` and
on ``.watcherd.lock`` in each of its drop folders (a hidden name, so never a
candidate). The kernel drops a flock when its process dies, however it dies:
there is never a stale lock to clean up by hand. A clean stop also removes the
folder's lock file, so nothing is left behind in a drop folder.

A folder's lock file names its holder (pid, database, recursive), so a refused
daemon and the operator commands can say who runs the folder. Overlaps count
too: a recursive daemon's tree contains every folder below it.

flock keeps the daemons of one host apart, on a share too; daemons on several
hosts sharing one folder are not seen (that needs a shared claim store). A
file system that refuses locks (NFS without lockd: ENOLCK) runs unlocked, with
a warning.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path, PurePath

from watcherd.config import Config, FolderConfig
from watcherd.errors import ConfigError, WatcherdError

logger = logging.getLogger(__name__)

FOLDER_LOCK_NAME = ".watcherd.lock"
# flock is not supported there: run unlocked rather than not at all.
UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}
# A lock can be busy for an instant with no daemon behind it (a command asking
# who holds it takes a shared lock for that instant): look again before refusing.
BUSY_TRIES = 10
BUSY_PAUSE_SECONDS = 0.05


class AlreadyRunning(WatcherdError):
    """Another live watcherd holds the database or one of the folders."""


@dataclass(frozen=True)
class Holder:
    """The live daemon holding a folder's lock, as its lock file describes it."""

    folder: Path
    pid: int | None
    state_db: str | None
    recursive: bool

    def describe(self) -> str:
        who = f"watcherd pid {self.pid}" if self.pid else "another watcherd"
        return f"{who} (database {self.state_db or 'not named yet'})"


class InstanceLock:
    """The database's lock plus one lock per folder the daemon works on."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.path = Path(f"{config.state_db}.lock")
        self._fd: int | None = None
        self._folders: dict[Path, FolderLock] = {}

    def acquire(self) -> InstanceLock:
        self._lock_database()
        try:
            self.hold(self.config)
        except BaseException:
            self.release()
            raise
        return self

    def hold(self, config: Config) -> None:
        """Lock the folders ``config`` works on (new ones after a reload), free the rest.

        All or nothing: when one folder is refused, the ones locked by this call
        are released again and AlreadyRunning (or ConfigError) is raised.
        """
        taken: dict[Path, FolderLock] = {}
        try:
            for key, folder in _keyed_folders(config):
                if folder.path in self._folders:
                    self._folders[folder.path].update(folder, key)
                elif folder.path not in taken:
                    taken[folder.path] = FolderLock(folder, self.config.state_db).acquire(key)
        except BaseException:
            for lock in taken.values():
                lock.release()
            raise
        wanted = {f.path for _, f in _keyed_folders(config)}
        for path in [p for p in self._folders if p not in wanted]:
            self._folders.pop(path).release()
        self._folders.update(taken)

    def release(self) -> None:
        for lock in self._folders.values():
            lock.release()
        self._folders.clear()
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def _lock_database(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, mine = _take(self.path, 0o600)
        if not mine:
            holder = _read_pid(fd)
            os.close(fd)
            raise AlreadyRunning(
                f"another watcherd{f' (pid {holder})' if holder else ''} is already using "
                f"{self.path.with_suffix('')}; stop it first, or give this one its own "
                "state_db")
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd


class FolderLock:
    """``.watcherd.lock`` in one drop folder, and the overlap checks around it."""

    def __init__(self, folder: FolderConfig, state_db: Path) -> None:
        self.folder = folder
        self.state_db = state_db
        self.path = folder.path / FOLDER_LOCK_NAME
        self._fd: int | None = None

    def acquire(self, key: str) -> FolderLock:
        try:
            fd, mine = _take(self.path, 0o644)
        except OSError as exc:
            self._cannot_lock(key, exc)
            return self
        if not mine:
            holder = _read_holder(fd, self.folder.path)
            os.close(fd)
            raise AlreadyRunning(
                f"{key}: {self.folder.path} is already watched by {holder.describe()}; stop "
                "it first, or take the folder out of one of the two configs")
        self._fd = fd
        self._describe_holder()
        # Only now, with our own lock visible: of two daemons starting at once,
        # at least one sees the other.
        try:
            self._refuse_overlaps(key)
        except BaseException:
            self.release()
            raise
        return self

    def update(self, folder: FolderConfig, key: str) -> None:
        """A reload changed the folder's settings: recheck what ``recursive`` changes."""
        if folder.recursive != self.folder.recursive:
            previous, self.folder = self.folder, folder
            try:
                self._refuse_overlaps(key)
            except BaseException:
                self.folder = previous
                raise
        self.folder = folder
        self._describe_holder()

    def _describe_holder(self) -> None:
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, json.dumps({"pid": os.getpid(), "state_db": str(self.state_db),
                                        "recursive": self.folder.recursive}).encode() + b"\n",
                  0)

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            if _same_file(self._fd, self.path):
                os.unlink(self.path)  # still locked: whoever opened it meanwhile retries
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None

    def _cannot_lock(self, key: str, exc: OSError) -> None:
        if exc.errno in UNSUPPORTED:
            logger.warning("%s: cannot lock %s (%s): this file system does not support "
                           "locks, so a second watcherd on this folder would not be noticed",
                           key, self.path, exc.strerror or exc)
        elif self.folder.after == "leave" and exc.errno in (errno.EROFS, errno.EACCES,
                                                            errno.EPERM):
            logger.warning("%s: cannot create the lock file %s (%s): a read-only source "
                           "(after: leave) is watched unlocked, so a second watcherd on it "
                           "would not be noticed", key, self.path, exc.strerror or exc)
        elif exc.errno in (errno.ENOENT, errno.ENOTDIR):
            logger.warning("%s: %s is not there, so it is not locked against a second "
                           "watcherd", key, self.folder.path)
        else:
            raise ConfigError([f"{key}: cannot create the lock file {self.path} "
                               f"({exc.strerror or exc}); watcherd needs to write there"])

    def _refuse_overlaps(self, key: str) -> None:
        real = Path(os.path.realpath(self.folder.path))
        for parent in real.parents:
            holder = holder_of(parent)
            if holder is None or not _other(holder) or not holder.recursive:
                continue
            if not _hidden(real.relative_to(parent)):
                raise AlreadyRunning(
                    f"{key}: {self.folder.path} is inside {parent}, which {holder.describe()} "
                    "watches recursively; stop it first, or take the folder out of one of "
                    "the two configs")
        if not self.folder.recursive:
            return
        for directory, subdirs, _ in os.walk(real):
            subdirs[:] = [d for d in subdirs if not d.startswith(".")]
            if directory == str(real):
                continue
            holder = holder_of(Path(directory))
            if holder is not None and _other(holder):
                raise AlreadyRunning(
                    f"{key}: {self.folder.path} is recursive and contains {directory}, which "
                    f"{holder.describe()} watches; stop it first, or take the folder out of "
                    "one of the two configs")


def holder_of(folder: Path) -> Holder | None:
    """The live daemon holding ``folder``'s lock, or None (no lock, or nobody holds it)."""
    try:
        fd = os.open(folder / FOLDER_LOCK_NAME, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _read_holder(fd, folder)
    except OSError:
        return None
    finally:
        os.close(fd)  # drops the shared lock, if we got it
    return None


def other_databases(config: Config) -> list[Holder]:
    """Live daemons on ``config``'s folders that use another database than ``config``."""
    holders = [holder_of(folder.path) for folder in config.folders]
    return [h for h in holders if h is not None and h.state_db != str(config.state_db)]


def _keyed_folders(config: Config) -> list[tuple[str, FolderConfig]]:
    """Each folder the daemon works on, with the config key that names it."""
    active = [(f"folders[{i}].path", f) for i, f in enumerate(config.folders)]
    return active + [(f"retired folder {f.path}", f) for f in config.retired]


def _take(path: Path, mode: int) -> tuple[int, bool]:
    """Open (create) ``path`` and try its exclusive flock: (fd, True) when now ours,
    (fd, False) when another process holds it. The caller owns the fd either way."""
    for _ in range(BUSY_TRIES):
        # O_NOFOLLOW: a planted symlink must not make us truncate its target.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, mode)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            time.sleep(BUSY_PAUSE_SECONDS)
            continue
        except OSError:
            os.close(fd)
            raise
        if _same_file(fd, path):
            return fd, True
        os.close(fd)  # its holder removed it as it stopped: lock the file now there
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW), False


def _same_file(fd: int, path: Path) -> bool:
    try:
        there = os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino)


def _other(holder: Holder) -> bool:
    return holder.pid != os.getpid()


def _hidden(relative: PurePath) -> bool:
    # The daemon ignores hidden subfolders, so a folder inside one does not overlap.
    return any(part.startswith(".") for part in relative.parts)


def _read_holder(fd: int, folder: Path) -> Holder:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode())
    except (OSError, ValueError):
        info = {}  # being written this very moment, or not ours to read
    if not isinstance(info, dict):
        info = {}
    pid = info.get("pid")
    state_db = info.get("state_db")
    return Holder(folder=folder, pid=pid if isinstance(pid, int) else None,
                  state_db=state_db if isinstance(state_db, str) else None,
                  recursive=info.get("recursive") is True)


def _read_pid(fd: int) -> str | None:
    try:
        text = os.pread(fd, 32, 0).decode().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if text.isdigit() else None
