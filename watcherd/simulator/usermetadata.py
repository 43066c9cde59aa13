"""``user_metadata`` as the simulator takes it: strictly, as the API documents it.

An object with string keys; each value a string, a boolean, a number (an
integer only within 53 bits: a wider one must be sent as a string) or a list
of strings. Keys set to ``""``, ``[]`` or ``null`` are dropped, as Twelve
Labs drops them. ``POST /tasks`` sends the object as JSON text in a form
field; the assets endpoints send it as a JSON object. Anything else is a 400
``parameter_invalid`` naming the offending key, so a client that breaks the
rules is caught by the tests instead of by the real API.
"""

from __future__ import annotations

import json
import math
from typing import Any

from watcherd.simulator.multipart import ApiError

MAX_SAFE_INTEGER = 2**53 - 1
DROPPED: tuple[Any, ...] = ("", [], None)


def from_text(text: str | None) -> dict[str, Any] | None:
    """The form field of ``POST /tasks``: JSON text of an object, checked."""
    if text is None:
        return None
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except ValueError as exc:
        raise _invalid(f"not JSON ({exc})") from exc
    return checked(value)


def checked(value: Any) -> dict[str, Any] | None:
    """``value`` (a decoded JSON body field) if it follows the rules, without dropped keys."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _invalid(f"must be an object, not {type(value).__name__}")
    kept = {}
    for key, item in value.items():
        if not isinstance(key, str) or not key:
            raise _invalid(f"key {key!r} is not a non-empty string")
        if any(item == d and type(item) is type(d) for d in DROPPED):
            continue
        problem = _value_problem(item)
        if problem:
            raise _invalid(f"`{key}` {problem}")
        kept[key] = item
    return kept


def _value_problem(item: Any) -> str | None:
    if isinstance(item, bool | str):
        return None
    if isinstance(item, int):
        return "is an integer wider than 53 bits" if abs(item) > MAX_SAFE_INTEGER else None
    if isinstance(item, float):
        return None if math.isfinite(item) else "is not a finite number"
    if isinstance(item, list) and all(isinstance(s, str) for s in item):
        return None
    return f"has a value of type {type(item).__name__} (string, number, boolean or a list " \
           "of strings only)"


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _invalid(why: str) -> ApiError:
    return ApiError(400, "parameter_invalid", f"The `user_metadata` parameter is invalid: {why}.")
