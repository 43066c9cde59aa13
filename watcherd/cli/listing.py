"""``watcherd list``: one line per tracked file, newest first (``list`` is a builtin's name).

Rows stream from a database cursor and are printed as they come (the table in
small blocks), so memory stays flat and the first lines appear at once however
many files the database remembers.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any

import watcherd.state.queries as queries
from watcherd.cli.access import configured_folder, operator_config, readonly_store
from watcherd.cli.render import (
    iso,
    job_shown,
    output_console,
    remote_ids,
    session_json,
    session_text,
    shown,
    styled_state,
    table,
)
from watcherd.exitcodes import EXIT_OK
from watcherd.state.schema import FileRecord
from watcherd.state.store import Store

LIST_FIELDS = ("path", "state", "task_id", "video_id", "reason", "remote_status", "attempts",
               "dest_path", "duplicate_of", "upload_method")
TERMINAL_LIMIT = 1000  # a person at a terminal reads the newest; a pipe gets every row
BLOCK_ROWS = 200  # the table is drawn this many rows at a time


def list_rows(store: Store, state: str | None, folder: str | None, *,
              since: float | None = None, limit: int | None = None
              ) -> Iterator[dict[str, Any]]:
    """One row per tracked file, newest first: the ``--json`` lines."""
    return ({**list_row(r), "session": session_json(queries.upload_session(store, r))}
            for r in queries.listed(store, state, folder, since=since, limit=limit))


def list_row(record: FileRecord) -> dict[str, Any]:
    return {**{name: shown(getattr(record, name)) for name in LIST_FIELDS},
            **remote_ids(record), "updated_at": iso(record.updated_at)}


def cmd_list(args: argparse.Namespace) -> int:
    config = operator_config(args)
    folder = configured_folder(config, args.folder)
    limit = _limit(args)
    with readonly_store(config) as store:
        if store is None:
            rows: Iterator[dict[str, Any]] = iter(())
        else:  # one more than shown: says whether the limit cut anything
            rows = list_rows(store, args.state, str(folder) if folder else None,
                             since=args.since, limit=None if limit is None else limit + 1)
        if args.json:
            _print_json(islice(rows, limit))
            return EXIT_OK
        shown_rows = _print_table(rows, limit)
    if shown_rows == 0:
        print("no tracked files")
    return EXIT_OK


def _limit(args: argparse.Namespace) -> int | None:
    if args.limit is not None:
        return args.limit or None
    return TERMINAL_LIMIT if not args.json and sys.stdout.isatty() else None


def _print_json(rows: Iterable[dict[str, Any]]) -> None:
    write = sys.stdout.write
    for row in rows:
        write(json.dumps(row, ensure_ascii=False) + "\n")


def _print_table(rows: Iterator[dict[str, Any]], limit: int | None) -> int:
    """Draws ``rows`` in blocks as they come; returns how many were drawn."""
    console = output_console()
    drawn = 0
    while limit is None or drawn < limit:
        room = BLOCK_ROWS if limit is None else min(BLOCK_ROWS, limit - drawn)
        block = list(islice(rows, room))
        if not block:
            return drawn
        grid = table(("state", "file", "task", "detail"),
                     ((styled_state(r["state"]), r["path"], job_shown(r),
                       r["reason"] or r["video_id"] or session_text(r["session"]))
                      for r in block))
        grid.show_header = drawn == 0
        console.print(grid)
        sys.stdout.flush()
        drawn += len(block)
    if next(rows, None) is not None:
        print(f"(the newest {limit:,} shown: --limit N for more, --limit 0 for all, "
              "--since to narrow)", file=sys.stderr)
    return drawn
