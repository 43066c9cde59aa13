"""``watcherd list``: one line per tracked file, newest first (``list`` is a builtin's name)."""

from __future__ import annotations

import argparse
import json
from typing import Any

import watcherd.state.queries as queries
from watcherd.cli.access import configured_folder, operator_config, readonly_store
from watcherd.cli.render import iso, output_console, shown, styled_state, table
from watcherd.exitcodes import EXIT_OK
from watcherd.state.store import Store

LIST_FIELDS = ("path", "state", "task_id", "video_id", "reason", "remote_status", "attempts",
               "dest_path", "duplicate_of")


def list_rows(store: Store, state: str | None, folder: str | None) -> list[dict[str, Any]]:
    """One row per tracked file, newest first: the ``--json`` lines."""
    return [{**{name: shown(getattr(r, name)) for name in LIST_FIELDS},
             "updated_at": iso(r.updated_at)} for r in queries.listed(store, state, folder)]


def cmd_list(args: argparse.Namespace) -> int:
    config = operator_config(args)
    folder = configured_folder(config, args.folder)
    with readonly_store(config) as store:
        rows = list_rows(store, args.state, str(folder) if folder else None) if store else []
    if args.json:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
        return EXIT_OK
    if not rows:
        print("no tracked files")
        return EXIT_OK
    output_console().print(table(
        ("state", "file", "task", "detail"),
        ((styled_state(r["state"]), r["path"], r["task_id"] or "",
          r["reason"] or r["video_id"] or "") for r in rows)))
    return EXIT_OK
