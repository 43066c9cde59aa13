"""``watcherd retry``: put failed files back in their inbox, safely while the daemon runs.

The file goes back to the path it was found at (a free sibling name if that
is taken), through the same no-clobber move the daemon uses (a hidden temp
name across filesystems, which the daemon ignores), so the daemon sees a
finished file appear and picks it up as new: a fresh row, attempts at zero.
The old row stays as history with a note of the retry, and the failed
sidecar is removed so failed/ only lists what is still failed.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import watcherd.state.queries as queries
from watcherd.cli.access import configured_folder, operator_config
from watcherd.cli.render import output_console, print_json, table
from watcherd.config import Config
from watcherd.exitcodes import EXIT_FAIL, EXIT_OK
from watcherd.ingest.mover import SIDECAR_SUFFIX, move_file
from watcherd.intake.metadata import metadata_file_for
from watcherd.state.schema import FileRecord
from watcherd.state.states import State
from watcherd.state.store import Store

logger = logging.getLogger(__name__)


def cmd_retry(args: argparse.Namespace) -> int:
    if (args.target is None) == (not args.failed):
        raise SystemExit("watcherd retry: give a PATH or TASK_ID, or --failed (not both)")
    config = operator_config(args)
    if not Path(config.state_db).exists():
        print(f"watcherd: no state database at {config.state_db}", file=sys.stderr)
        return EXIT_FAIL
    # Writable (for the history notes), but not opened: the schema is the daemon's business.
    store = Store(config.state_db)
    try:
        records = select_failed(store, args.target, configured_folder(config, args.folder))
        results = retry(store, records, config, dry_run=args.dry_run)
    finally:
        store.close()
    if args.json:
        print_json(results)
    else:
        render_retry(results, args.dry_run, args.target)
    if not results and args.target is not None:
        return EXIT_FAIL
    return EXIT_OK if all(r["skipped"] is None for r in results) else EXIT_FAIL


def select_failed(store: Store, target: str | None, folder: Path | None) -> list[FileRecord]:
    """Failed rows for a path (inbox or failed/ location), a task id, or all (in a folder)."""
    if target is None:
        records = [r for r in store.in_states(State.FAILED)
                   if folder is None or r.folder == str(folder)]
    else:
        path = str(Path(target).expanduser().absolute())
        records = (queries.records_at(store, path) or queries.records_for_path(store, path)
                   or queries.records_for_task(store, target))
    # A path that failed, was retried and failed again has older failed rows:
    # only its latest row says where the file is now.
    latest = {r.path: r for r in records}
    return [r for r in latest.values() if r.state == State.FAILED]


def plan(store: Store, record: FileRecord, config: Config) -> dict[str, Any]:
    """What retrying ``record`` would do, or why it cannot."""
    entry: dict[str, Any] = {"file_id": record.id, "from": record.dest_path,
                             "to": record.path, "reason": record.reason, "skipped": None}
    latest = queries.records_for_path(store, record.path)[-1]
    if latest.id != record.id:
        entry["skipped"] = f"the file was picked up again since (now {latest.state})"
    elif record.dest_path == record.path:
        entry["skipped"] = ("left in place (after: leave), where this version is not taken "
                            "again; a changed file (even just touched) is a new version")
    elif not record.dest_path or not Path(record.dest_path).is_file():
        entry["skipped"] = "no longer in failed/ (moved or deleted by someone)"
    elif not any(f.path == Path(record.folder) for f in config.folders):
        # Moving it back would strand it: nothing watches that folder any more.
        entry["skipped"] = f"its folder {record.folder} is no longer in the config"
    return entry


def retry(store: Store, records: list[FileRecord], config: Config,
          dry_run: bool) -> list[dict[str, Any]]:
    results = []
    for record in records:
        entry = plan(store, record, config)
        if entry["skipped"] is None and not dry_run:
            entry["to"] = str(_move_back(store, record, config))
        entry["moved"] = entry["skipped"] is None and not dry_run
        results.append(entry)
    return results


def _move_back(store: Store, record: FileRecord, config: Config) -> Path:
    source = Path(record.dest_path or "")
    landed = move_file(source, Path(record.path))
    folder = config.folder_for(record.path)
    if folder is not None and Path(metadata_file_for(source, folder)).is_file():
        # Its metadata file goes back with it.
        move_file(Path(metadata_file_for(source, folder)), Path(metadata_file_for(landed, folder)))
    source.with_name(source.name + SIDECAR_SUFFIX).unlink(missing_ok=True)
    store.note(record.id, f"retry requested by an operator: moved back to {landed}")
    logger.info("moved %s back to %s", source, landed)
    return landed


def render_retry(results: list[dict[str, Any]], dry_run: bool, target: str | None) -> None:
    console = output_console()
    if not results:
        console.print(f"no failed file matches {target}" if target else "no failed files")
        return
    verb = "would move" if dry_run else "moved"
    console.print(table(("", "from", "to", "failed because"), (
        (verb if r["skipped"] is None else f"skipped: {r['skipped']}", r["from"], r["to"],
         r["reason"]) for r in results)))
