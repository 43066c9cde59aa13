"""File names as the filesystem has them: any bytes, at most NAME_MAX of them.

Linux names are bytes. Python hands them to us as ``str`` decoded with
``surrogateescape`` (``os.fsdecode``), so a byte that is not UTF-8 becomes a
lone surrogate: fine for ``open``, fatal for SQLite, JSON files, HTTP headers
and terminals. This module is the one place that says how such a name is
stored (the exact bytes), shown (``\\xff`` escapes) and sent to the API
(valid UTF-8), and how names we create are kept within NAME_MAX.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import PurePath

# Bytes per path component on every local Linux filesystem (ext4, xfs, btrfs, tmpfs).
NAME_MAX = 255
SIDECAR_SUFFIX = ".json"
# A moved file's name leaves room for its sidecar, "<name>.json".
MOVED_NAME_MAX = NAME_MAX - len(SIDECAR_SUFFIX)
# Marks a name cut short to fit: "<start of the stem>…<-n><.ext>".
SHORTENED_MARK = "…"
# A longer "extension" is not one a video has: it is cut like the stem.
MAX_KEPT_SUFFIX = 16


def name_bytes(name: str) -> int:
    """Length of ``name`` on disk, in bytes."""
    return len(os.fsencode(name))


def is_utf8(text: str) -> bool:
    """True unless ``text`` carries undecodable bytes (lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def display(path: str | os.PathLike[str]) -> str:
    """``path`` for people, logs, JSON and SQLite text: undecodable bytes as ``\\xNN``."""
    text = os.fspath(path)
    if is_utf8(text):
        return text
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def api_filename(path: str | os.PathLike[str]) -> str:
    """The file name sent to Twelve Labs: valid UTF-8 (undecodable bytes become U+FFFD).

    Backslash escapes are no use here: multipart parsers read ``\\`` inside a
    quoted filename as an escape. The exact name travels in ``source_path``.
    """
    name = PurePath(os.fspath(path)).name
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def fit_name(name: str, tag: str = "", limit: int = MOVED_NAME_MAX) -> str:
    """``stem + tag + suffix`` when it fits in ``limit`` bytes, else the stem cut short.

    ``tag`` is a collision counter such as ``-1``. A cut name is
    ``<start of the stem>…<tag><suffix>``, cut at a character boundary.
    """
    stem, suffix = split_suffix(name)
    whole = f"{stem}{tag}{suffix}"
    if name_bytes(whole) <= limit:
        return whole
    room = limit - name_bytes(f"{SHORTENED_MARK}{tag}{suffix}")
    return f"{_cut(stem, room)}{SHORTENED_MARK}{tag}{suffix}"


def split_suffix(name: str) -> tuple[str, str]:
    path = PurePath(name)
    if name_bytes(path.suffix) > MAX_KEPT_SUFFIX:
        return name, ""
    return path.stem, path.suffix


def temp_name(prefix: str, target_name: str) -> str:
    """A hidden temp name for writing ``target_name``, always within NAME_MAX.

    ``<prefix><pid>-<digest>-<start of the target name>``: the digest of the
    whole target name (see ``is_temp_for``) finds a killed run's leftovers.
    """
    head = f"{prefix}{os.getpid()}-{name_digest(target_name)}-"
    return head + _cut(target_name, NAME_MAX - name_bytes(head))


def is_temp_for(candidate: str, prefix: str, target_name: str) -> bool:
    """True for a ``temp_name`` of ``target_name`` (any pid), or for one in the older
    unshortened format ``<prefix><pid>-<target name>`` (left by an upgraded install)."""
    if not candidate.startswith(prefix):
        return False
    pid, _, rest = candidate[len(prefix):].partition("-")
    return pid.isdigit() and (rest == target_name
                              or rest.startswith(f"{name_digest(target_name)}-"))


def name_digest(name: str) -> str:
    return hashlib.sha256(os.fsencode(name)).hexdigest()[:16]


def _cut(text: str, room: int) -> str:
    """The longest start of ``text`` within ``room`` bytes, never splitting a character."""
    kept, used = [], 0
    for char in text:
        used += name_bytes(char)
        if used > room:
            break
        kept.append(char)
    return "".join(kept)
