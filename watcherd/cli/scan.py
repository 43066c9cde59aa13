"""``watcherd scan --dry-run``: what the daemon would do with every file, changing nothing.

Each file in each folder gets one verdict, decided by the daemon's own
functions: ignored (by which naming rule, or a symlink: ``filters.skip_reason``),
tracked (the daemon already has it), settling (still changing), unreadable
(the service user may not read it: ``settle.unreadable_reason``), invalid
(the media rule and its reason), duplicate (of which file: the row the
daemon would join, ``Store.holder_for_new``, or earlier in this scan) or
would_upload. No API call, no database write, no move; media checks and
hashes read the files. Paths are shown escaped (``names.display``).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console

from watcherd.cli.access import operator_config, readonly_store
from watcherd.cli.render import emit, styled_state, table
from watcherd.config import Config, FolderConfig
from watcherd.errors import MediaRejected
from watcherd.exitcodes import EXIT_OK
from watcherd.ingest.dedupe import sha256_file
from watcherd.intake.alongside import already_taken
from watcherd.intake.filters import skip_reason
from watcherd.intake.metadata import gather
from watcherd.intake.settle import seconds_unchanged, unreadable_reason
from watcherd.names import display
from watcherd.service.folderprofiles import cached_profiles
from watcherd.state.schema import FileRecord
from watcherd.state.states import UNREADABLE
from watcherd.state.store import Store


def cmd_scan(args: argparse.Namespace) -> int:
    if not args.dry_run:
        raise SystemExit("watcherd scan: only --dry-run exists; the daemon rescans by itself "
                         "every rescan_interval_seconds")
    config = operator_config(args)
    with readonly_store(config) as store:
        results = dry_scan(cached_profiles(config, store), store)
    emit(results, args.json, render_scan)
    return EXIT_OK


def dry_scan(config: Config, store: Store | None, now: float | None = None
             ) -> list[dict[str, Any]]:
    now = time.time() if now is None else now
    seen: dict[tuple[str, str], str] = {}  # (sha256, index) -> first path in this scan
    results = []
    for folder in config.folders:
        for path in sorted(_all_files(folder)):
            metadata: dict[str, Any] = {}
            verdict, detail = _classify(config, store, folder, path, now, seen, metadata)
            results.append({"folder": str(folder.path), "path": display(path),
                            "verdict": verdict, "detail": detail, "metadata": metadata or None})
    return results


def _classify(config: Config, store: Store | None, folder: FolderConfig, path: str,
              now: float, seen: dict[tuple[str, str], str],
              metadata: dict[str, Any]) -> tuple[str, str | None]:
    """The verdict and its detail; ``metadata`` gets the merged user_metadata of a file
    that would be uploaded or joined, with each key's source."""
    reason = skip_reason(path, folder)
    if reason is not None:
        return "ignored", reason
    record = store.active_by_path(path) if store is not None else None
    if record is not None and record.error_code == UNREADABLE:
        return "unreadable", record.reason
    if record is not None:
        return "tracked", record.state
    taken = _left_as_taken(store, folder, path)
    if taken is not None:
        return "tracked", f"{taken.state}: this version was ingested and left in place"
    quiet = seconds_unchanged(path, now) or 0.0
    if quiet < config.settle_seconds:
        return "settling", f"changed {quiet:.0f}s ago (needs {config.settle_seconds:g}s)"
    problem = unreadable_reason(path)
    if problem is not None:
        return "unreadable", problem
    from watcherd.media.validate import check_for_folder  # PyAV: only when a file must be read

    try:
        gathered = gather(path, folder)
    except MediaRejected as exc:
        return "invalid", f"{exc.rule}: {exc.reason}"
    report = check_for_folder(path, folder)
    failure = report.first_failure
    if failure is not None:
        return "invalid", f"{failure.rule}: {failure.reason}"
    metadata.update(user_metadata=gathered.values, sources=gathered.origins,
                    notes=list(gathered.notes))
    if folder.dedupe:
        sha = sha256_file(path)
        holder = store.holder_for_new(sha, folder.index_id) if store else None
        if holder is not None:
            return "duplicate", f"of {display(holder.path)} ({holder.state})"
        first = seen.setdefault((sha, folder.index_id), path)
        if first != path:
            return "duplicate", f"of {display(first)} (earlier in this scan)"
    return "would_upload", f"to index {folder.index_id}"


def _left_as_taken(store: Store | None, folder: FolderConfig, path: str) -> FileRecord | None:
    if store is None or folder.after != "leave":
        return None
    try:
        return already_taken(store, path, os.stat(path), folder)
    except OSError:
        return None


def _all_files(folder: FolderConfig) -> Iterator[str]:
    """Every entry the daemon could see but a directory (symlinks included, so the
    verdict can say why they are skipped): the top level, or the tree when recursive."""
    for directory, subdirs, files in os.walk(folder.path):
        here = Path(directory)
        subdirs[:] = [] if not folder.recursive else [
            d for d in subdirs if not d.startswith(".")
            and here / d not in (folder.done_dir, folder.failed_dir)]
        yield from (str(here / name) for name in files)


def _detail_with_metadata(result: dict[str, Any]) -> str:
    metadata = result.get("metadata")
    if not metadata:
        return result["detail"] or ""
    keys = ", ".join(f"{k}={v!r} ({metadata['sources'][k]})"
                     for k, v in metadata["user_metadata"].items())
    notes = "; ".join(metadata["notes"])
    return " · ".join(part for part in (result["detail"], keys, notes) if part)


def render_scan(results: list[dict[str, Any]], console: Console) -> None:
    if not results:
        console.print("no files in any folder")
        return
    console.print(table(("verdict", "file", "detail"),
                        ((styled_state(r["verdict"].replace("_", " ")), r["path"],
                          _detail_with_metadata(r)) for r in results)))
    tally: dict[str, int] = {}
    for r in results:
        tally[r["verdict"]] = tally.get(r["verdict"], 0) + 1
    console.print("\n" + ", ".join(f"{n} {v.replace('_', ' ')}" for v, n in sorted(tally.items())))

