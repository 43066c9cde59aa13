"""Which drop folder a claim is about, and where its file is on this host.

Hosts may mount the share at different paths, so a claim names a folder by
the id in its ``.watcherd-cluster`` marker (written once, by the first
coordinated daemon, without ever replacing one already there) and the file by
its exact path bytes below that folder.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from pathlib import Path

from watcherd.cluster.claims import Identity
from watcherd.config import FolderConfig
from watcherd.errors import ConfigError
from watcherd.state.instance import CLUSTER_MARKER_NAME
from watcherd.state.schema import FileRecord

READ_TRIES = 20


def share_id(folder: Path) -> str:
    """The folder's id: read from its marker, or written there now (first host wins)."""
    marker = folder / CLUSTER_MARKER_NAME
    for _ in range(READ_TRIES):
        found = _read(marker)
        if found:
            return found
        if not os.path.lexists(marker):
            _write_once(marker)
        else:
            time.sleep(0.05)  # another host is writing it right now
    raise ConfigError([f"{marker}: not a watcherd cluster marker; delete it and start again"])


def read_share_id(folder: Path) -> str | None:
    """The folder's id, without writing one (the operator commands)."""
    return _read(folder / CLUSTER_MARKER_NAME)


def _read(marker: Path) -> str | None:
    try:
        info = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    share = info.get("share") if isinstance(info, dict) else None
    return share if isinstance(share, str) and share else None


def _write_once(marker: Path) -> None:
    """Write a fresh marker beside it, then link it into place: never over another's."""
    text = json.dumps({"share": uuid.uuid4().hex, "created_by": socket.gethostname(),
                       "created_at": time.time()})
    temporary = marker.with_name(f"{marker.name}.{uuid.uuid4().hex}")
    try:
        temporary.write_text(text + "\n", encoding="utf-8")
        os.link(temporary, marker)
    except FileExistsError:
        pass
    except OSError as exc:
        raise ConfigError([f"{marker}: cannot write the cluster marker "
                           f"({exc.strerror or exc}); watcherd needs to write there"]) from exc
    finally:
        temporary.unlink(missing_ok=True)


class Shares:
    """Each configured folder's id, and the claim identity of a file in it."""

    def __init__(self, folders: tuple[FolderConfig, ...]) -> None:
        self.by_path: dict[Path, str] = {}
        self.add(folders)

    def add(self, folders: tuple[FolderConfig, ...]) -> None:
        """Folders a reload added (the ones it removed keep theirs: files may finish)."""
        for folder in folders:
            if folder.path not in self.by_path:
                self.by_path[folder.path] = share_id(folder.path)

    def identity(self, folder: FolderConfig, record: FileRecord) -> Identity:
        relative = os.path.relpath(record.path, folder.path)
        return Identity(self.by_path[folder.path], os.fsencode(relative), record.size or 0,
                        record.mtime_ns or 0)

    def local_path(self, share: str, relpath: bytes) -> Path | None:
        for path, known in self.by_path.items():
            if known == share:
                return path / os.fsdecode(relpath)
        return None

    def ids(self) -> list[str]:
        return list(self.by_path.values())
