"""Values between Python and SQLite: paths as exact bytes, free text escaped, JSON columns."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Mapping
from typing import Any

from watcherd.names import display, is_utf8
from watcherd.state.schema import COLUMNS, UPDATABLE, FileRecord

JSON_COLUMNS = ("facts", "task_json", "metadata_json")


def checked_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(fields) - UPDATABLE
    if unknown:
        raise ValueError(f"unknown columns: {sorted(unknown)}")
    return {k: db_value(k, json.dumps(v) if k in JSON_COLUMNS and v is not None
                         and not isinstance(v, str) else v) for k, v in fields.items()}


PATH_COLUMNS = ("path", "folder", "dest_path")


def db_path(value: Any) -> Any:
    """A path for SQLite: a name that is not UTF-8 as the BLOB of its exact bytes."""
    return os.fsencode(value) if isinstance(value, str) and not is_utf8(value) else value


def db_text(value: Any) -> Any:
    return display(value) if isinstance(value, str) else value


def db_value(column: str, value: Any) -> Any:
    return db_path(value) if column in PATH_COLUMNS else db_text(value)


def path_from_db(value: Any) -> Any:
    return os.fsdecode(value) if isinstance(value, bytes) else value


def record_from_row(row: sqlite3.Row) -> FileRecord:
    return FileRecord(**{k: path_from_db(row[k]) if k in PATH_COLUMNS else row[k]
                         for k in COLUMNS})
