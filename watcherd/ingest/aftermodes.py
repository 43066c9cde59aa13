"""What becomes of a finished file's source (``folders[].after``), and of its metadata file.

- ``move`` (the default): the finalizer moves the video to done/ or failed/;
  its metadata file (``clip.mp4.meta.json``) follows it there, named after
  the moved video, so the two never part.
- ``leave``: nothing in the drop folder is renamed, written or removed (it
  may be a read-only mount). The sidecar goes to ``records_dir``, mirroring
  the tree, and the finished row remembers the version (path, size, mtime,
  sha256) so it is never taken again (``settle.already_taken``); a rebuilt
  database reads the same records back (``service.rebuild``).
- ``delete``: a file whose task is ready gets its sidecar in ``records_dir``
  (done_dir unless set) first; only then are the video and its metadata
  file removed. A failed file is moved to failed/ as with ``move``.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from watcherd.config import FolderConfig
from watcherd.intake.metadata import metadata_file_for
from watcherd.names import fit_name
from watcherd.state.schema import FileRecord


def moves(record: FileRecord, folder: FolderConfig | None) -> bool:
    """Whether this finished file goes to done/ or failed/ (else it is left or deleted)."""
    if folder is None or folder.after == "move":
        return True
    return folder.after == "delete" and record.outcome != "ready"


def companions(record: FileRecord, folder: FolderConfig | None) -> tuple[str, ...]:
    """Suffixes of files that travel with this one and need a free name beside it."""
    if folder is None or not os.path.lexists(metadata_file_for(record.path, folder)):
        return ()
    return (folder.metadata.suffix,)


def metadata_move(source: str, moved: Path, folder: FolderConfig | None
                  ) -> tuple[Path, Path] | None:
    """(where the metadata file is, where it goes) for a video moved from ``source`` to
    ``moved``; None when it has none (or it has already gone with it)."""
    if folder is None:
        return None
    found = Path(metadata_file_for(source, folder))
    target = Path(metadata_file_for(moved, folder))
    if not os.path.lexists(found) and not os.path.lexists(target):
        return None
    return found, target


def record_anchor(record: FileRecord, folder: FolderConfig) -> Path:
    """The path in ``records_dir`` whose sidecar (``<it>.json``) is this file's record:
    the source's place below the drop folder, mirrored."""
    assert folder.records_dir is not None  # the config sets it for leave and delete
    relative = Path(record.path).relative_to(folder.path)
    return folder.records_dir / relative.parent / fit_name(relative.name)


def remove_source(record: FileRecord, folder: FolderConfig) -> None:
    """``after: delete``, once the record is written: the video, then its metadata file."""
    for path in (record.path, metadata_file_for(record.path, folder)):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass  # removed before a crash, or by someone else: the aim is met
        except OSError as exc:
            if exc.errno != errno.ENAMETOOLONG:  # a metadata file name that cannot exist
                raise
