"""Validation profiles: what each Twelve Labs index model takes, and which applies.

A folder validates against the models of its index (``GET /indexes/{id}`` →
``models[].model_name``), unless ``folders[].model`` pins one. The figures come
from ``shared/research/round2-assets-models-multihost.md`` sections 0 and 2
and ``twelvelabs-api.md`` section 5; each profile says where and when, and the
README's validation table repeats them. When in doubt a profile leans towards
accepting: a file refused here never reaches Twelve Labs, while one the API
refuses only costs an upload.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from watcherd.media.limits import GIB, Limits

logger = logging.getLogger(__name__)

AUTO = "auto"
MARENGO_3_0 = "marengo3.0"
MARENGO_2_7 = "marengo2.7"
PEGASUS_1_2 = "pegasus1.2"

# Where a folder's profile came from.
FROM_INDEX = "index"  # the index's models, asked just now
FROM_OVERRIDE = "override"  # folders[].model (or probe --model) pins it
FROM_CACHE = "cache"  # the index's models as last asked, from the state database
FROM_DEFAULT = "default"  # never asked and nothing cached: the newest profile


@dataclass(frozen=True)
class ModelProfile:
    name: str
    limits: Limits
    takes_videos: bool  # False: an index with only this model can no longer index videos
    as_of: str  # when these figures were last confirmed
    source: str  # where they come from
    title: str = ""  # how people write it, for messages ("Marengo 3.0")


PROFILES: dict[str, ModelProfile] = {
    MARENGO_3_0: ModelProfile(
        MARENGO_3_0,
        Limits(max_size_bytes=4 * GIB, min_duration_seconds=4.0,
               max_duration_seconds=4 * 3600.0, duration_tolerance_seconds=0.1,
               min_short_side=360, max_long_side=5184, max_short_side=2160,
               max_aspect_ratio=2.4),
        takes_videos=True, as_of="2026-10",
        source="Twelve Labs OpenAPI spec (2026-07-30) and SDK 1.3.6: the only index model",
        title="Marengo 3.0"),
    MARENGO_2_7: ModelProfile(
        MARENGO_2_7,
        # Its docs listed ratios from 1:1 to 16:9 (17:9 later); the loosest is kept.
        Limits(max_size_bytes=2 * GIB, min_duration_seconds=4.0,
               max_duration_seconds=2 * 3600.0, duration_tolerance_seconds=0.1,
               min_short_side=360, max_long_side=3840, max_short_side=2160,
               max_aspect_ratio=1.89),
        takes_videos=True, as_of="2025 (retired 2026-03-30)",
        source="Twelve Labs v1.3 docs, POST /tasks; indexes reindexed to Marengo 3.0",
        title="Marengo 2.7"),
    PEGASUS_1_2: ModelProfile(
        PEGASUS_1_2,
        Limits(max_size_bytes=2 * GIB, min_duration_seconds=4.0,
               max_duration_seconds=3600.0, duration_tolerance_seconds=0.1,
               min_short_side=360, max_long_side=3840, max_short_side=2160,
               max_aspect_ratio=1.89),
        takes_videos=False, as_of="2025 (indexing sunset 2026)",
        source="Twelve Labs v1.3 docs, POST /tasks; SDK 1.3.6: no new videos",
        title="Pegasus 1.2"),
}
NEWEST = MARENGO_3_0  # for a model name this version does not know yet
# The spellings before profiles had versions: still accepted, with a warning.
DEPRECATED_NAMES = {"marengo": NEWEST, "pegasus": PEGASUS_1_2}
MODEL_CHOICES = (AUTO, *PROFILES, *DEPRECATED_NAMES)

LimitOverrides = tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class FolderProfile:
    """The limits one folder validates with, and why those."""

    name: str  # a profile, or several joined by "+" when the index has several models
    limits: Limits  # the folder's ``limits:`` overrides already applied
    source: str  # FROM_INDEX, FROM_OVERRIDE, FROM_CACHE or FROM_DEFAULT
    models: tuple[str, ...] = ()  # what the index said it has, when it was asked
    checked_at: float | None = None  # when it said so (wall clock)

    def describe(self) -> str:
        said = f": {', '.join(self.models)}" if self.models else ""
        return f"{self.name} (from {self.source}{said})"

    def title(self) -> str:
        """The model(s) as people write them, for a refusal's reason: "Marengo 3.0"."""
        return " + ".join(PROFILES[name].title or name for name in self.name.split("+"))

    def as_of(self) -> str:
        return "; ".join(PROFILES[name].as_of for name in self.name.split("+"))

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "models": list(self.models),
                "checked_at": self.checked_at, "as_of": self.as_of(),
                "limits": asdict(self.limits)}


class NoVideoModel(Exception):
    """The index has no model that still takes new videos (a Pegasus 1.2-only index)."""

    def __init__(self, index_id: str, models: Sequence[str]) -> None:
        self.reason = (f"index {index_id} has only {', '.join(models)}, which can no longer "
                       "take new videos (Twelve Labs ended Pegasus 1.2 indexing in 2026): "
                       f"create an index with {NEWEST} and put its id here")
        super().__init__(self.reason)


def canonical(model: str) -> str:
    """A configured model name as a profile name (old spellings mapped)."""
    return DEPRECATED_NAMES.get(model, model)


def deprecation(model: str) -> str | None:
    """The warning an old spelling deserves, or None."""
    if model not in DEPRECATED_NAMES:
        return None
    return (f"model {model!r} is deprecated: it now means {DEPRECATED_NAMES[model]}; use "
            f"'auto' to follow the index's model, or '{DEPRECATED_NAMES[model]}' to pin it")


def index_models(index: dict[str, Any]) -> tuple[str, ...]:
    """The model names in a ``GET /indexes/{id}`` answer (v1.3: ``models[].model_name``)."""
    models = index.get("models")
    if not isinstance(models, list):
        return ()
    names = (m.get("model_name") or m.get("name") for m in models if isinstance(m, dict))
    return tuple(str(name) for name in names if name)


def check_takes_videos(index_id: str, models: Sequence[str]) -> None:
    """NoVideoModel unless one of ``models`` still indexes new videos."""
    if models and not any(_takes_videos(m) for m in models):
        raise NoVideoModel(index_id, models)


def pinned(model: str, overrides: LimitOverrides = ()) -> FolderProfile:
    """The profile ``folders[].model`` (or ``probe --model``) names."""
    name = canonical(model)
    return FolderProfile(name, with_overrides(PROFILES[name].limits, overrides), FROM_OVERRIDE)


def default(overrides: LimitOverrides = ()) -> FolderProfile:
    """Before the index was ever asked: the newest profile."""
    return FolderProfile(NEWEST, with_overrides(PROFILES[NEWEST].limits, overrides),
                         FROM_DEFAULT)


def from_models(models: Sequence[str], overrides: LimitOverrides = (), *, source: str,
                checked_at: float | None = None) -> FolderProfile:
    """The strictest profile over the index's models that still take videos.

    Pegasus 1.2 beside a Marengo model does not count: Twelve Labs indexes such
    an index's new videos with Marengo only (SDK 1.3.6). A name not in the
    table counts as the newest profile, with one warning per name.
    """
    names = sorted({_profile_name(m) for m in models if _takes_videos(m)}, reverse=True)
    if not names:  # nothing reported (or Pegasus only, refused before this)
        names = [NEWEST]
    limits = strictest(PROFILES[n].limits for n in names)
    return FolderProfile("+".join(names), with_overrides(limits, overrides), source,
                         tuple(models), checked_at)


def strictest(each: Iterable[Limits]) -> Limits:
    """Field by field, the bound that refuses more: the highest minimum, the lowest maximum
    (and the least slack)."""
    items = list(each)
    values = {f.name: (max if f.name.startswith("min_") else min)(
        getattr(limits, f.name) for limits in items) for f in fields(Limits)}
    return Limits(**values)


def with_overrides(limits: Limits, overrides: LimitOverrides) -> Limits:
    return replace(limits, **dict(overrides)) if overrides else limits


def _takes_videos(model: str) -> bool:
    known = PROFILES.get(model)
    return known.takes_videos if known is not None else True


_warned_unknown: set[str] = set()
_warned_lock = threading.Lock()


def _profile_name(model: str) -> str:
    if model in PROFILES:
        return model
    with _warned_lock:
        first = model not in _warned_unknown
        _warned_unknown.add(model)
    if first:
        logger.warning("index model %r is newer than this watcherd knows: validating with the "
                       "newest known profile, %s, until a watcherd release knows its limits",
                       model, NEWEST)
    return NEWEST
