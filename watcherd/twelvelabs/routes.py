"""An API path as its route template, e.g. ``/tasks/{id}``: a bounded name for metrics.

Every segment that is not one of the API's own words is an id (a task, index,
video, asset or upload session), so no id ever becomes a label value and the
set of templates is as small as the set of endpoints the client calls.
"""

from __future__ import annotations

# The words of every path the client sends (client.py, assets.py).
ROUTE_WORDS = frozenset({
    "tasks", "indexes", "videos", "assets", "multipart-uploads", "presigned-urls",
    "indexed-assets",
})


def route_template(path: str) -> str:
    """``/indexes/abc/videos/def?x=1`` → ``/indexes/{id}/videos/{id}``."""
    segments = path.split("?", 1)[0].strip("/").split("/")
    return "/" + "/".join(s if s in ROUTE_WORDS else "{id}" for s in segments if s)
