"""The shape of a validation profile's limits, and the upload path's own cap.

The figures per model live in ``profiles`` (one table, with their sources and
dates). A folder may override any limit under ``limits:``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

GIB = 1024**3


@dataclass(frozen=True)
class Limits:
    max_size_bytes: int
    min_duration_seconds: float
    max_duration_seconds: float
    # Containers round durations (AAC priming, edit lists): a clip cut at
    # exactly 4 s may report 3.98 s, so edges get this much slack.
    duration_tolerance_seconds: float
    min_short_side: int  # the shorter displayed side: 360 for every model
    max_long_side: int  # Marengo 3.0: 5184
    max_short_side: int  # Marengo 3.0: 2160
    # Long side / short side of the displayed picture: 2.4 admits 2.4:1 and 1:2.4.
    max_aspect_ratio: float


_TYPES = {"int": int, "float": float}
# key -> expected Python type, for validating a folder's ``limits:`` block.
LIMIT_KEYS: dict[str, type] = {f.name: _TYPES[str(f.type)] for f in fields(Limits)}


@dataclass(frozen=True)
class UploadPath:
    """How watcherd sends a file: a cap of its own, apart from what the model takes."""

    name: str
    max_size_bytes: int
    lift: str  # how an operator gets a bigger file past this path


# Twelve Labs documents each path's cap whatever the index's model takes (research
# round 2, sections 0.7 and 2): the legacy single request "up to 2 GB", a multipart
# session's ``total_size`` "video/audio <= 10 GB". Read as GiB, like the model limits:
# when in doubt a file goes to the API rather than being refused here.
TASKS_UPLOAD = UploadPath(
    name="POST /tasks",
    max_size_bytes=2 * GIB,
    lift="set the folder's upload_method to auto or multipart (resumable multipart uploads "
         "take files up to the model's limit), or re-encode or split the file below 2.0 GiB",
)
MULTIPART_UPLOAD = UploadPath(
    name="the multipart upload",
    max_size_bytes=10 * GIB,
    lift="re-encode or split the file below 10.0 GiB",
)


def upload_path(method: str) -> UploadPath:
    """The path a folder's ``upload_method`` validates against: ``auto`` uses multipart
    (a file too big for its /tasks fallback waits rather than fails)."""
    return TASKS_UPLOAD if method == "tasks" else MULTIPART_UPLOAD
