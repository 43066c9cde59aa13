"""Is a file gone, or is its whole folder out of reach (an unmounted share)?

An empty or missing drop folder never proves that the files we track were
deleted: a share that unmounts leaves an empty mount point behind, and a
folder being re-created is briefly missing. So a file only counts as
vanished when it is missing from a folder that is there and not empty.
"""

from __future__ import annotations

import os

from watcherd.state.instance import WATCHERD_FILES


def folder_reachable(folder: str | os.PathLike[str]) -> bool:
    """True when ``folder`` is a readable directory with at least one entry.

    Our own lock and cluster marker files do not count: they may sit in the
    empty mount point of a share that is not mounted.
    """
    try:
        with os.scandir(folder) as entries:
            return any(entry.name not in WATCHERD_FILES for entry in entries)
    except OSError:
        return False

