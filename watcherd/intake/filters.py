"""Which paths are candidates: the naming rules, each with a name.

``ignore_reason`` returns the naming rule that excludes a path (so ``explain``
and debug logs can say why) or None; it is a pure function of the path and
the folder config. ``kind_reason`` says why what is at a path is not taken
(a symlink, a directory…) from its ``lstat``; ``skip_reason`` is both, as
the daemon applies them, for ``scan --dry-run`` and ``explain``.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePath

from watcherd.config import FolderConfig
from watcherd.state.instance import FOLDER_LOCK_NAME

# Partial/temp names written by browsers, WinSCP, rsync and friends
# (watch-folder-peers.md appendix A). Checked on the final suffix only:
# "clip.mp4.part" is partial, "~syncthing~clip.mp4.tmp" too.
PARTIAL_SUFFIXES = (".part", ".partial", ".crdownload", ".download", ".tmp", ".temp", ".filepart")


def ignore_reason(path: str | PurePath, folder: FolderConfig) -> str | None:
    # Prefixes of ``parts`` are exactly ``is_relative_to`` for these absolute
    # POSIX paths, without a Path per parent (a rescan calls this per file).
    parts = Path(path).parts
    for special in ("done_dir", "failed_dir"):
        if is_under(parts, getattr(folder, special)):
            return f"inside {special} ({getattr(folder, special)})"
    root = folder.path.parts
    if not is_under(parts, folder.path) or len(parts) == len(root):
        return f"outside the watched folder {folder.path}"
    relative = parts[len(root):]
    if len(relative) > 1 and not folder.recursive:
        return "in a subfolder and the folder is not recursive"
    return name_reason(relative, folder)


def is_under(parts: tuple[str, ...], folder: PurePath) -> bool:
    """``Path(*parts).is_relative_to(folder)``, from parts already split."""
    top = folder.parts
    return parts[:len(top)] == top


def name_reason(relative: tuple[str, ...], folder: FolderConfig) -> str | None:
    """The naming rule that excludes a file, from its parts below the watched folder."""
    name = relative[-1]
    if name == FOLDER_LOCK_NAME:
        return "watcherd's folder lock (one daemon per folder)"
    video = video_of_metadata_file(name, folder)
    if video is not None:
        return f"metadata file of {video} (read and moved with it, never uploaded itself)"
    hidden = [part for part in relative if part.startswith(".")]
    if hidden:
        return f"hidden name ({hidden[0]})"
    if name.startswith("~$"):
        return "temporary name (~$ owner file)"
    if name.endswith("~"):
        return "temporary name (ends with ~)"
    dot = name.rfind(".")
    suffix = name[dot:].lower() if 0 < dot < len(name) - 1 else ""  # as PurePath.suffix
    if suffix in PARTIAL_SUFFIXES:
        return f"partial download name ({suffix})"
    if suffix not in folder.extensions:
        return f"not a video extension ({suffix or 'no suffix'})"
    return None


def video_of_metadata_file(name: str, folder: FolderConfig) -> str | None:
    """The video name whose metadata file (``clip.mp4.meta.json``) ``name`` is, or None."""
    suffix = folder.metadata.suffix
    if name.endswith(suffix) and len(name) > len(suffix):
        return name[:-len(suffix)]
    return None


def kind_reason(st: os.stat_result) -> str | None:
    """Why the thing ``lstat`` describes is not taken: only regular files are."""
    if stat.S_ISLNK(st.st_mode):
        return "symbolic link (links are never followed)"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    return None


def skip_reason(path: str | PurePath, folder: FolderConfig) -> str | None:
    """``ignore_reason``, then ``kind_reason`` of what is there (None if nothing is)."""
    reason = ignore_reason(path, folder)
    if reason is not None:
        return reason
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return kind_reason(st)
