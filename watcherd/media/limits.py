"""Twelve Labs' video requirements per model, kept in one table.

Figures come from ``shared/research/twelvelabs-api.md`` section 5 (POST /tasks,
API v1.3). A folder may override any of them under ``limits:``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

GIB = 1024**3


@dataclass(frozen=True)
class Limits:
    max_size_bytes: int
    min_duration_seconds: float
    max_duration_seconds: float
    # Containers round durations (AAC priming, edit lists): a clip cut at
    # exactly 4 s may report 3.98 s, so edges get this much slack.
    duration_tolerance_seconds: float
    min_short_side: int  # 360p: the shorter displayed side
    max_long_side: int  # 4K: 3840
    max_short_side: int  # 4K: 2160


_MARENGO = Limits(
    max_size_bytes=2 * GIB,
    min_duration_seconds=4.0,
    max_duration_seconds=2 * 3600.0,
    duration_tolerance_seconds=0.1,
    min_short_side=360,
    max_long_side=3840,
    max_short_side=2160,
)

MODEL_LIMITS: dict[str, Limits] = {
    "marengo": _MARENGO,
    # Pegasus differs only in duration: 5 s to 30 min.
    "pegasus": replace(_MARENGO, min_duration_seconds=5.0, max_duration_seconds=30 * 60.0),
}

_TYPES = {"int": int, "float": float}
# key -> expected Python type, for validating a folder's ``limits:`` block.
LIMIT_KEYS: dict[str, type] = {f.name: _TYPES[str(f.type)] for f in fields(Limits)}


def limits_for(model: str, overrides: dict[str, Any] | None = None) -> Limits:
    """The model's limits with a folder's overrides applied (already validated)."""
    base = MODEL_LIMITS[model]
    return replace(base, **overrides) if overrides else base
