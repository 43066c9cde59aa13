"""Reading YAML into typed values, collecting every error with its key path.

Each accessor records ``key.path: message`` and returns a default on bad
input instead of raising, so one pass over the file reports every problem.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from watcherd.media.limits import LIMIT_KEYS


class Errors:
    """Collects ``key.path: message`` lines while walking the YAML."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.warnings: list[str] = []

    def add(self, key: str, message: str) -> None:
        self.lines.append(f"{key}: {message}")

    def warn(self, key: str, message: str) -> None:
        self.warnings.append(f"{key}: {message}")


class Reader:
    """Typed accessors that record an error and return a default on bad input."""

    def __init__(self, errors: Errors, base_dir: Path) -> None:
        self.errors = errors
        self.base_dir = base_dir

    def unknown_keys(self, raw: dict, allowed: set[str], prefix: str) -> None:
        for key in raw:
            if key not in allowed:
                where = f"{prefix}.{key}" if prefix else str(key)
                self.errors.add(where, f"unknown key (allowed: {', '.join(sorted(allowed))})")

    def string(self, raw: dict, name: str, key: str, default: str | None = None,
               required: bool = False) -> str | None:
        value = raw.get(name)
        if value is None:
            if required:
                self.errors.add(key, "required")
            return default
        if not isinstance(value, str) or not value.strip():
            self.errors.add(key, f"must be a non-empty string (got {value!r})")
            return default
        return value.strip()

    def path(self, raw: dict, name: str, key: str, required: bool = False) -> Path | None:
        value = self.string(raw, name, key, required=required)
        if value is None:
            return None
        expanded = Path(value).expanduser()
        return Path(os.path.normpath(self.base_dir / expanded))

    def number(self, raw: dict, name: str, key: str, default: float, *, minimum: float,
               maximum: float | None = None, integer: bool = False) -> float:
        value = raw.get(name, default)
        wrong_type = isinstance(value, bool) or not isinstance(value, (int, float))
        if wrong_type or (integer and not isinstance(value, int)):
            kind = "an integer" if integer else "a number"
            self.errors.add(key, f"must be {kind} (got {value!r})")
            return default
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
            self.errors.add(key, f"must be {bound} (got {value!r})")
            return default
        return value

    def boolean(self, raw: dict, name: str, key: str, default: bool = False) -> bool:
        value = raw.get(name, default)
        if not isinstance(value, bool):
            self.errors.add(key, f"must be true or false (got {value!r})")
            return default
        return value

    def choice(self, raw: dict, name: str, key: str, options: tuple[str, ...], default: str) -> str:
        value = raw.get(name, default)
        if value not in options:
            self.errors.add(key, f"must be one of {', '.join(options)} (got {value!r})")
            return default
        return value

    def extensions(self, raw: dict, default: tuple[str, ...], key: str) -> tuple[str, ...]:
        value = raw.get("extensions")
        if value is None:
            return tuple(default)
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            self.errors.add(key, "must be a non-empty list of suffixes like .mp4")
            return tuple(default)
        return tuple("." + v.lower().lstrip(".") for v in value)

    def limits(self, raw: dict, key: str) -> dict[str, Any]:
        value = raw.get("limits")
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.errors.add(key, "must be a mapping of limit names to numbers")
            return {}
        overrides: dict[str, Any] = {}
        for name in value:
            expected = LIMIT_KEYS.get(name)
            if expected is None:
                allowed = ", ".join(LIMIT_KEYS)
                self.errors.add(f"{key}.{name}", f"unknown limit (allowed: {allowed})")
                continue
            number = self.number(value, name, f"{key}.{name}", 0, minimum=0,
                                 integer=expected is int)
            overrides[name] = expected(number)
        return overrides
