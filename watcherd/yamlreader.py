"""Reading YAML into typed values, collecting every error with its key path.

Each accessor records ``key.path: message`` and returns a default on bad
input instead of raising, so one pass over the file reports every problem.
A ``Section`` reads one mapping into the fields of one config dataclass and
takes each default from the field itself, so a default is written only there.
"""

from __future__ import annotations

import dataclasses
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


def field_default(shape: type, name: str) -> Any:
    """The default written on field ``name`` of dataclass ``shape``."""
    for found in dataclasses.fields(shape):
        if found.name != name:
            continue
        if found.default is not dataclasses.MISSING:
            return found.default
        if found.default_factory is not dataclasses.MISSING:
            return found.default_factory()
        raise TypeError(f"{shape.__name__}.{name} has no default")
    raise TypeError(f"{shape.__name__} has no field {name}")


class Section:
    """One YAML mapping read into the fields of dataclass ``shape``.

    Each key is read under the field's name; a key left out (or unusable)
    gives the field's default. ``prefix`` is the mapping's own key path.
    """

    def __init__(self, reader: Reader, raw: dict, shape: type, prefix: str = "") -> None:
        self.reader = reader
        self.raw = raw
        self.shape = shape
        self.prefix = prefix

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def default(self, name: str) -> Any:
        return field_default(self.shape, name)

    def number(self, name: str, *, minimum: float, maximum: float | None = None,
               integer: bool = False, default: float | None = None) -> float:
        """``default`` overrides the field's when it follows from other settings."""
        return self.reader.number(self.raw, name, self.key(name),
                                  self.default(name) if default is None else default,
                                  minimum=minimum, maximum=maximum, integer=integer)

    def boolean(self, name: str) -> bool:
        return self.reader.boolean(self.raw, name, self.key(name), self.default(name))

    def choice(self, name: str, options: tuple[str, ...]) -> str:
        return self.reader.choice(self.raw, name, self.key(name), options, self.default(name))

    def string(self, name: str, required: bool = False) -> str | None:
        default = None if required else self.default(name)
        return self.reader.string(self.raw, name, self.key(name), default, required=required)

    def path(self, name: str, required: bool = False) -> Path | None:
        return self.reader.path(self.raw, name, self.key(name), required=required)

    def extensions(self) -> tuple[str, ...]:
        return self.reader.extensions(self.raw, self.default("extensions"),
                                      self.key("extensions"))

    def limits(self) -> dict[str, Any]:
        return self.reader.limits(self.raw, self.key("limits"))
