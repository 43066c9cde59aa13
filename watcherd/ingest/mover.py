"""Move finished files without ever overwriting or losing one.

- A taken name gets a distinct suffix (``clip-1.mp4``); the sidecar name
  (``clip-1.mp4.json``) must be free too. Every name written here fits in
  NAME_MAX with its sidecar: a longer one is cut short (``names.fit_name``),
  and temp names have a bounded length (``names.temp_name``).
- Same filesystem: ``link`` + ``unlink``, which fails instead of clobbering
  when the name was taken in the meantime (``rename`` would silently replace).
- Another filesystem (EXDEV): copy to a hidden temp name in the target
  folder, fsync, link into place, fsync the folder, and only then remove the
  source. A full disk leaves the source where it was.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
from pathlib import Path
from typing import BinaryIO

from watcherd.names import NAME_MAX, SIDECAR_SUFFIX, fit_name, is_temp_for, name_bytes, temp_name
from watcherd.threads import beat

logger = logging.getLogger(__name__)

COPY_BLOCK = 1 << 20

TEMP_PREFIX = ".watcherd-tmp-"
MAX_SUFFIX = 10_000


def free_target(directory: Path, name: str, companions: tuple[str, ...] = ()) -> Path:
    """The first ``name``, ``stem-1.ext``, ``stem-2.ext``… not taken (with its sidecar,
    and with each ``companion`` suffix: the metadata file that travels with it).

    Each is shortened to fit NAME_MAX with the longest of those appended (``names.fit_name``).
    """
    suffixes = (SIDECAR_SUFFIX, *companions)
    limit = NAME_MAX - max(name_bytes(s) for s in suffixes)
    for n in range(MAX_SUFFIX):
        candidate = directory / fit_name(name, f"-{n}" if n else "", limit)
        if not _taken(candidate, suffixes):
            return candidate
    raise FileExistsError(f"no free name for {name} in {directory}")


def _taken(candidate: Path, suffixes: tuple[str, ...] = (SIDECAR_SUFFIX,)) -> bool:
    return os.path.lexists(candidate) or any(
        os.path.lexists(candidate.with_name(candidate.name + s)) for s in suffixes)


def move_file(source: Path, target: Path) -> Path:
    """Move ``source`` to ``target`` (or a free sibling name); returns where it went."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        return _link_into_place(source, target, remove=source)
    except OSError as exc:
        if exc.errno == errno.EXDEV:
            return _copy_across(source, target)
        if exc.errno in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
            return _rename_checked(source, target)  # filesystems without hard links
        raise


def _link_into_place(source: Path, target: Path, *, remove: Path) -> Path:
    while True:
        try:
            os.link(source, target, follow_symlinks=False)
            break
        except FileExistsError:
            target = free_target(target.parent, target.name)
    os.unlink(remove)
    return target


def _rename_checked(source: Path, target: Path) -> Path:
    # Only reached where hard links are unsupported; the check-then-rename
    # window is tiny and done/failed are never written by anyone else.
    if _taken(target):
        target = free_target(target.parent, target.name)
    os.rename(source, target)
    return target


def copy_data(src: BinaryIO, dst: BinaryIO) -> None:
    while block := src.read(COPY_BLOCK):
        dst.write(block)
        beat()  # a 2 GB copy to a slow share is progress, not a hang


def _copy_across(source: Path, target: Path) -> Path:
    _remove_stale_temps(target)
    temp = target.parent / temp_name(TEMP_PREFIX, target.name)
    try:
        with open(source, "rb") as src, open(temp, "xb") as dst:
            copy_data(src, dst)
            dst.flush()
            os.fsync(dst.fileno())
        shutil.copystat(source, temp)
        final = _link_into_place(temp, target, remove=temp)
    except BaseException:
        _remove_quietly(temp)
        raise
    _fsync_dir(final.parent)
    os.unlink(source)
    return final


def write_atomically(target: Path, text: str) -> Path:
    """Write ``text`` to ``target`` atomically (temp file, fsync, rename)."""
    _remove_stale_temps(target)  # a run killed mid-write left its own (pid-named) temp
    temp = target.parent / temp_name(TEMP_PREFIX, target.name)
    try:
        with open(temp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temp, target)
    except BaseException:
        _remove_quietly(temp)
        raise
    _fsync_dir(target.parent)
    return target


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some network filesystems refuse fsync on directories
    finally:
        os.close(fd)


def _remove_stale_temps(target: Path) -> None:
    """Partial writes of ``target`` left by an earlier run that was killed mid-write."""
    # Matched by name, not by a glob of it: "take [2].mp4" is no pattern.
    for stale in target.parent.glob(f"{TEMP_PREFIX}*"):
        if not is_temp_for(stale.name, TEMP_PREFIX, target.name):
            continue
        logger.info("removing a partial copy left by an earlier run: %s", stale)
        _remove_quietly(stale)


def _remove_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
