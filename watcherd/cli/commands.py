"""The operator commands: status, list, explain, retry, scan --dry-run, probe.

Each builds plain data (the ``--json`` output, documented in the README) and
then renders it for people. All of them are safe while the daemon runs: they
read the database read-only; only ``retry`` writes (a history note per file
it moves back) and moves files, the way the daemon itself moves them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.text import Text

from watcherd.cli.explain import explain, render_explain
from watcherd.cli.render import output_console, styled_state, table
from watcherd.cli.status import build_status, list_rows, render_status
from watcherd.config import Config, load_config
from watcherd.service.folderprofiles import cached_profiles
from watcherd.state.instance import other_databases
from watcherd.state.store import Store

EXIT_OK = 0
EXIT_FAIL = 1
VERDICT_STYLES = {"pass": "green", "fail": "red"}


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


def _load_config(args: argparse.Namespace) -> Config:
    """The config, with a note when a daemon runs its folders on another database."""
    config = load_config(args.config)
    for holder in other_databases(config):
        print(f"watcherd: note: {holder.folder} is run by {holder.describe()}, not with "
              f"{config.state_db}: to see what it does, give -c the config it runs with",
              file=sys.stderr)
    return config


def _readonly_store(config: Config) -> Store | None:
    """The daemon's database opened read-only, or None before its first run."""
    return Store(config.state_db, readonly=True) if Path(config.state_db).exists() else None


def _folder(config: Config, value: str | None) -> Path | None:
    if value is None:
        return None
    path = Path(value).expanduser().absolute()
    if not any(f.path == path for f in config.folders):
        raise SystemExit(f"watcherd: {path} is not a configured folder "
                         f"({', '.join(str(f.path) for f in config.folders)})")
    return path


def _read(config: Config, build: Callable[[Store | None], Any]) -> Any:
    """``build(store)`` with the database opened read-only (None before its first run)."""
    store = _readonly_store(config)
    try:
        return build(store)
    finally:
        if store is not None:
            store.close()


def _emit(data: Any, as_json: bool, render: Callable[[Any, Any], None]) -> None:
    if as_json:
        _print_json(data)
    else:
        render(data, output_console())


def cmd_status(args: argparse.Namespace) -> int:
    config = _load_config(args)
    if not Path(config.state_db).exists():
        print(f"watcherd: no state database at {config.state_db} (has the daemon run yet?)",
              file=sys.stderr)
        return EXIT_FAIL
    folder = _folder(config, args.folder)
    _emit(_read(config, lambda store: build_status(config, store, folder)), args.json,
          render_status)
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    config = _load_config(args)
    folder = _folder(config, args.folder)
    rows = _read(config, lambda store: list_rows(store, args.state, folder) if store else [])
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


def cmd_explain(args: argparse.Namespace) -> int:
    config = _load_config(args)
    _emit(_read(config, lambda store: explain(cached_profiles(config, store), store, args.path)),
          args.json, render_explain)
    return EXIT_OK


def cmd_retry(args: argparse.Namespace) -> int:
    from watcherd.cli.retry import retry, select_failed

    if (args.target is None) == (not args.failed):
        raise SystemExit("watcherd retry: give a PATH or TASK_ID, or --failed (not both)")
    config = _load_config(args)
    if not Path(config.state_db).exists():
        print(f"watcherd: no state database at {config.state_db}", file=sys.stderr)
        return EXIT_FAIL
    # Writable (for the history notes), but not opened: the schema is the daemon's business.
    store = Store(config.state_db)
    try:
        records = select_failed(store, args.target, _folder(config, args.folder))
        results = retry(store, records, config, dry_run=args.dry_run)
    finally:
        store.close()
    if args.json:
        _print_json(results)
    else:
        _render_retry(results, args.dry_run, args.target)
    if not results and args.target is not None:
        return EXIT_FAIL
    return EXIT_OK if all(r["skipped"] is None for r in results) else EXIT_FAIL


def _render_retry(results: list[dict[str, Any]], dry_run: bool, target: str | None) -> None:
    console = output_console()
    if not results:
        console.print(f"no failed file matches {target}" if target else "no failed files")
        return
    verb = "would move" if dry_run else "moved"
    console.print(table(("", "from", "to", "failed because"), (
        (verb if r["skipped"] is None else f"skipped: {r['skipped']}", r["from"], r["to"],
         r["reason"]) for r in results)))


def cmd_scan(args: argparse.Namespace) -> int:
    from watcherd.cli.scan import dry_scan, render_scan

    if not args.dry_run:
        raise SystemExit("watcherd scan: only --dry-run exists; the daemon rescans by itself "
                         "every rescan_interval_seconds")
    config = _load_config(args)
    _emit(_read(config, lambda store: dry_scan(cached_profiles(config, store), store)),
          args.json, render_scan)
    return EXIT_OK


def cmd_probe(args: argparse.Namespace) -> int:
    from watcherd.cli.probeprofile import choose_profile, profile_table
    from watcherd.media.validate import check_file

    profile = choose_profile(args)
    try:
        report = check_file(args.file, profile.limits, require_audio=args.require_audio)
    except FileNotFoundError:
        print(f"watcherd: {args.file}: no such file", file=sys.stderr)
        return EXIT_FAIL
    if args.json:
        _print_json({"model": profile.name, "profile": profile.as_dict(), **report.as_dict()})
        return EXIT_OK if report.accepted else EXIT_FAIL
    console = output_console()
    console.print(f"{args.file}  (profile {profile.name}, from {profile.source})", markup=False)
    console.print(profile_table(profile))
    if report.facts:
        console.print(table(("fact", "value"), report.facts.as_dict().items()))
    console.print()
    console.print(table(("", "rule", "measured", "expected", "why"), (
        (Text(v.status.upper(), style=VERDICT_STYLES.get(v.status, "dim")), v.rule,
         v.measured, v.expected, v.reason or "") for v in report.verdicts)))
    verdict = "ACCEPTED" if report.accepted else "REJECTED"
    console.print(f"\n[{'green' if report.accepted else 'red'}]{verdict}[/]")
    return EXIT_OK if report.accepted else EXIT_FAIL
