"""What travels with a video as ``user_metadata``: one place decides it for every path.

The keys watcherd itself sends let an operator (and crash recovery) find the
video again by content and by origin, whichever endpoint created it: the
``user_metadata`` form field of ``POST /tasks`` and the JSON body of
``POST /indexes/{id}/indexed-assets`` carry the same object. On top of them
go the keys gathered for the file (``intake.metadata``: its metadata file,
its path, its folder), stored on its row before validation so every attempt,
and the sidecar, carry the same object. Those can never override watcherd's
own keys (refused at config load, or the file fails), so the merge below is
a formality that keeps that true even for a row written by hand.
"""

from __future__ import annotations

from typing import Any

from watcherd.foldersources import RESERVED_KEYS
from watcherd.names import display
from watcherd.state.schema import FileRecord

__all__ = ["RESERVED_KEYS", "user_metadata_for", "user_metadata_sources"]
WATCHERD = "watcherd"  # the origin of the reserved keys


def user_metadata_for(record: FileRecord) -> dict[str, Any]:
    """The ``user_metadata`` object sent for ``record``."""
    gathered, _ = record.gathered_metadata()
    own = {"sha256": record.sha256, "source_path": display(record.path),
           "watcherd_file_id": record.id}
    return {**gathered, **own}


def user_metadata_sources(record: FileRecord) -> dict[str, str]:
    """Where each key of ``user_metadata_for(record)`` came from: folder, path, file, watcherd."""
    _, origins = record.gathered_metadata()
    return {**origins, **dict.fromkeys(RESERVED_KEYS, WATCHERD)}
