"""What Twelve Labs takes as ``user_metadata``: the API's rules for keys and values.

From the API reference (research round 2, section 1.3): an object with string
keys whose values are strings, numbers, booleans or lists of strings; an
integer wider than 53 bits must travel as a string, since JSON readers turn
it into a float and lose digits. Checked before a single byte is uploaded,
so a file whose metadata breaks them fails locally instead of at the API.
Imports nothing from watcherd: the config (at load) and intake (for a
metadata file) read the same rules.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

# The largest integer a JSON reader that uses doubles keeps exactly (2**53 - 1).
MAX_SAFE_INTEGER = 2**53 - 1
ALLOWED = "a string, a number, true/false or a list of strings"


def key_problem(key: Any) -> str | None:
    """Why ``key`` cannot be a ``user_metadata`` key, or None."""
    if not isinstance(key, str):
        return f"keys must be strings (got {type(key).__name__} {key!r}; quote it)"
    if not key.strip():
        return "keys must not be empty"
    return None


def value_problem(value: Any) -> str | None:
    """Why ``value`` cannot be a ``user_metadata`` value, or None."""
    if isinstance(value, bool | str):
        return None
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            return (f"the integer {value} is wider than 53 bits: Twelve Labs would lose "
                    f"digits; write it as a string (\"{value}\")")
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{value} is not a JSON number"
    if isinstance(value, list):
        wrong = [item for item in value if not isinstance(item, str)]
        if wrong:
            return f"a list must hold only strings (got {wrong[0]!r})"
        return None
    shown = "null" if value is None else f"{type(value).__name__} {value!r}"
    return f"must be {ALLOWED} (got {shown})"


def problems(mapping: Mapping[Any, Any]) -> list[tuple[str, str]]:
    """Every (key, problem) in ``mapping``, keys shown as text."""
    found = []
    for key, value in mapping.items():
        problem = key_problem(key) or value_problem(value)
        if problem:
            found.append((str(key), problem))
    return found
