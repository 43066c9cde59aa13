"""``folders[].path_metadata``: a file's place in a recursive folder as metadata keys.

A template is the relative path split at ``/``; each segment is ``{key}`` (that
segment of the file's path becomes the value of ``key``), ``*`` (any one
segment), ``**`` (any number of segments, none included) or a literal, which
may use shell wildcards (``fnmatch``). ``{customer}/{project}/*`` turns
``acme/launch/clip.mp4`` into ``customer=acme, project=launch``. A path that
does not match gets no keys from it, and ``why_not`` says why. Imports nothing
from watcherd, so the config checks a template at load with this same parser.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fnmatch import fnmatchcase

KEY_SEGMENT = re.compile(r"^\{([^{}/]+)\}$")
ANY_DEPTH = "**"


@dataclass(frozen=True)
class PathTemplate:
    text: str
    segments: tuple[str, ...]

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(m.group(1) for s in self.segments if (m := KEY_SEGMENT.match(s)))

    def match(self, parts: tuple[str, ...]) -> dict[str, str] | None:
        """The keys for a file at ``parts`` below the folder (the name last), or None."""
        return _match(self.segments, parts, {})

    def why_not(self, parts: tuple[str, ...]) -> str:
        """Why ``parts`` does not match, for ``explain``."""
        shown = "/".join(parts)
        fixed = [s for s in self.segments if s != ANY_DEPTH]
        if ANY_DEPTH not in self.segments and len(parts) != len(fixed):
            return (f"{shown!r} has {len(parts)} path segments; path_metadata {self.text!r} "
                    f"needs exactly {len(fixed)}")
        if len(parts) < len(fixed):
            return (f"{shown!r} has {len(parts)} path segments; path_metadata {self.text!r} "
                    f"needs at least {len(fixed)}")
        return f"{shown!r} does not match path_metadata {self.text!r}"


def parse(text: str) -> PathTemplate | str:
    """The template, or why ``text`` is not one."""
    segments = tuple(text.strip().strip("/").split("/")) if text.strip("/ ") else ()
    if not segments:
        return "must name at least one segment, e.g. \"{customer}/{project}/*\""
    keys: list[str] = []
    for segment in segments:
        found = KEY_SEGMENT.match(segment)
        if found:
            keys.append(found.group(1).strip())
            if not keys[-1]:
                return f"segment {segment!r}: a key needs a name"
        elif not segment:
            return f"empty segment in {text!r} (two / in a row)"
        elif "{" in segment or "}" in segment:
            return (f"segment {segment!r}: a {{key}} must be a whole segment "
                    "(between two /)")
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        return f"key {duplicates[0]!r} appears twice"
    if segments.count(ANY_DEPTH) > 1:
        return f"at most one {ANY_DEPTH} (any depth)"
    if not keys:
        return "names no {key}: it would add nothing"
    return PathTemplate(text.strip(), segments)


def _match(segments: tuple[str, ...], parts: tuple[str, ...],
           found: dict[str, str]) -> dict[str, str] | None:
    if not segments:
        return found if not parts else None
    head, rest = segments[0], segments[1:]
    if head == ANY_DEPTH:
        for skip in range(len(parts) + 1):
            result = _match(rest, parts[skip:], dict(found))
            if result is not None:
                return result
        return None
    if not parts:
        return None
    key = KEY_SEGMENT.match(head)
    if key:
        return _match(rest, parts[1:], {**found, key.group(1).strip(): parts[0]})
    if not fnmatchcase(parts[0], head):
        return None
    return _match(rest, parts[1:], found)
