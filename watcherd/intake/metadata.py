"""The user_metadata gathered for a file: its folder's, its path's and its metadata file's.

Merged in that order, each on top of the one before: ``folders[].user_metadata``,
then the keys ``folders[].path_metadata`` reads from the file's place in the
tree, then the JSON object in the metadata file beside it
(``clip.mp4.meta.json``, the suffix configurable). Every key remembers where
it came from, for the sidecar, ``explain`` and ``scan --dry-run``. A metadata
file that is not a JSON object, breaks Twelve Labs' rules or tries to set a
key watcherd sends itself rejects the file (rule ``metadata``) before a byte
is uploaded; so does a missing one when the folder says ``metadata: required``
(the settler has already waited ``metadata_wait_seconds`` for it).
"""

from __future__ import annotations

import errno
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from watcherd.config import FolderConfig
from watcherd.errors import MediaRejected
from watcherd.foldersources import reserved_problem
from watcherd.names import display
from watcherd.twelvelabs.metadatarules import problems as value_problems

RULE = "metadata"
# A metadata file is a few keys; anything this large is a mistake, not metadata.
MAX_METADATA_BYTES = 1 << 20
FOLDER, PATH, FILE = "folder", "path", "file"


@dataclass(frozen=True)
class Gathered:
    values: dict[str, Any]
    origins: dict[str, str]  # key -> folder, path or file
    notes: tuple[str, ...] = ()  # why a source added nothing, for explain
    metadata_file: str | None = None  # the file read, when there was one

    def stored(self) -> dict[str, Any]:
        """What the file's row keeps (``FileRecord.gathered_metadata`` reads it back)."""
        return {"values": self.values, "origins": self.origins}


def metadata_file_for(path: str | os.PathLike[str], folder: FolderConfig) -> str:
    return os.fspath(path) + folder.metadata.suffix


def gather(path: str, folder: FolderConfig) -> Gathered:
    """The merged metadata for ``path``; MediaRejected (rule ``metadata``) if it cannot be sent."""
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    notes: list[str] = []
    _merge(values, origins, folder.metadata.folder_values(), FOLDER)
    template = folder.metadata.path_metadata
    if template is not None:
        parts = tuple(display(p) for p in Path(path).relative_to(folder.path).parts)
        found = template.match(parts)
        if found is None:
            notes.append(f"no path keys: {template.why_not(parts)}")
        _merge(values, origins, found or {}, PATH)
    source = metadata_file_for(path, folder)
    document = read_metadata_file(source)
    if document is None:
        if folder.metadata.mode == "required":
            raise MediaRejected(RULE, f"metadata: required, and {display(source)} did not "
                                f"arrive within {folder.metadata.wait_seconds:g}s of the video "
                                "settling; put it beside the video first, or set metadata: "
                                "optional")
        notes.append(f"no metadata file ({display(Path(source).name)})")
        return Gathered(values, origins, tuple(notes))
    _merge(values, origins, document, FILE)
    return Gathered(values, origins, tuple(notes), display(source))


def read_metadata_file(source: str) -> dict[str, Any] | None:
    """The checked JSON object in ``source``, None if there is none; MediaRejected if unusable."""
    name = display(Path(source).name)
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:  # a video named near NAME_MAX can have none
            return None
        if exc.errno == errno.ELOOP:
            raise MediaRejected(RULE, f"{name} is a symbolic link (links are never "
                                "followed)") from exc
        raise
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(MAX_METADATA_BYTES + 1)
    if len(data) > MAX_METADATA_BYTES:
        raise MediaRejected(RULE, f"{name} is larger than {MAX_METADATA_BYTES} bytes")
    try:
        document = json.loads(data.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise MediaRejected(RULE, f"{name} is not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise MediaRejected(RULE, f"{name} must hold a JSON object {{\"key\": value, …}} "
                            f"(got {type(document).__name__})")
    broken = [f"{key}: {problem}" for key, problem in value_problems(document)]
    broken += [f"{key}: {problem}" for key in document if (problem := reserved_problem(key))]
    if broken:
        raise MediaRejected(RULE, f"{name} breaks Twelve Labs' user_metadata rules: "
                            + "; ".join(broken))
    return document


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _merge(values: dict[str, Any], origins: dict[str, str], found: dict[str, Any],
           origin: str) -> None:
    for key, value in found.items():
        values[key] = value
        origins[key] = origin
