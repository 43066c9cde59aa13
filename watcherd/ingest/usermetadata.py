"""What travels with a video as ``user_metadata``: one place decides it for every path.

The keys watcherd itself sends let an operator (and crash recovery) find the
video again by content and by origin, whichever endpoint created it: the
``user_metadata`` form field of ``POST /tasks`` and the JSON body of
``POST /indexes/{id}/indexed-assets`` carry the same object.
"""

from __future__ import annotations

from typing import Any

from watcherd.names import display
from watcherd.state.schema import FileRecord

# Keys watcherd writes itself; nothing else may set them.
RESERVED_KEYS = ("sha256", "source_path", "watcherd_file_id")


def user_metadata_for(record: FileRecord) -> dict[str, Any]:
    """The ``user_metadata`` object sent for ``record``."""
    return {"sha256": record.sha256, "source_path": display(record.path),
            "watcherd_file_id": record.id}
