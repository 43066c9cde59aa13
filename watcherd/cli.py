"""The ``watcherd`` command: run, check-config, probe, status.

Exit codes: 0 success; 1 the file would be rejected (probe) or an operational
error; 2 bad command line; 78 (EX_CONFIG) invalid configuration, which the
systemd unit marks as not worth restarting.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import logging
import os
import signal
import sqlite3
import sys
from datetime import datetime
from pathlib import Path

from . import __version__
from .apikey import resolve_api_key
from .config import DEFAULT_CONFIG_PATH, Config, load_config
from .errors import ConfigError
from .instance import AlreadyRunning
from .limits import MODEL_LIMITS, limits_for
from .logs import setup_logging
from .store import FileRecord, Store

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_CONFIG = 78

EPILOG = """examples:
  watcherd run --config /etc/watcherd/config.yaml
  watcherd check-config -c ./config.yaml
  watcherd probe interview.mp4 --model pegasus
  watcherd status --json | jq 'select(.state == "failed")'

exit codes: 0 ok, 1 rejected/failed, 2 usage, 78 invalid configuration
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="watcherd", description="Watch drop folders and ingest videos into Twelve Labs.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"watcherd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("-c", "--config", default=os.environ.get("WATCHERD_CONFIG",
                                                                 DEFAULT_CONFIG_PATH),
                         help="config file (default: $WATCHERD_CONFIG or %(default)s)")
        return sub

    with_config("run", "run the daemon in the foreground until SIGTERM/SIGINT")
    with_config("check-config", "validate the config and print a summary")
    status = with_config("status", "show every tracked file")
    status.add_argument("--json", action="store_true", help="one JSON object per line")
    probe = commands.add_parser("probe", help="show a file's media facts and each rule's verdict")
    probe.add_argument("file")
    probe.add_argument("--model", choices=sorted(MODEL_LIMITS), default="marengo")
    probe.add_argument("--require-audio", action="store_true")
    probe.add_argument("--json", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"run": cmd_run, "check-config": cmd_check_config, "probe": cmd_probe,
               "status": cmd_status}[args.command]
    try:
        return handler(args)
    except ConfigError as exc:
        print_config_errors(exc)
        return EXIT_CONFIG


def print_config_errors(exc: ConfigError) -> None:
    where = f" in {exc.source}" if exc.source else ""
    print(f"watcherd: invalid configuration{where}:", file=sys.stderr)
    for line in exc.errors:
        print(f"  {line}", file=sys.stderr)


def cmd_run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    key = resolve_api_key(config.api.key_file)  # fail fast, before any thread starts
    setup_logging(config.log_level)
    # A hang is diagnosable: SIGUSR1 (or systemd's watchdog SIGABRT) dumps every
    # thread's stack to stderr, i.e. the journal.
    faulthandler.enable()
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    from .daemon import Daemon  # imports PyAV and watchdog: only when running

    logger = logging.getLogger(__name__)
    logger.info("watcherd %s: config %s, API %s, key from %s", __version__, config.source,
                config.api.base_url, key.source)
    try:
        return Daemon(config).run()
    except AlreadyRunning as exc:
        logger.critical("cannot run: %s", exc)
        return EXIT_FAIL
    except (OSError, sqlite3.Error) as exc:
        logger.critical("cannot run: %s (state_db %s)", exc, config.state_db)
        return EXIT_FAIL


def cmd_check_config(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    print(f"config {config.source}: OK")
    print(f"  api: {config.api.base_url}; key: {_key_status(config)}")
    print(f"  state_db: {config.state_db}")
    print(f"  settle {config.settle_seconds:g}s, poll {config.poll_interval_seconds:g}s, "
          f"rescan {config.rescan_interval_seconds:g}s, {config.upload_workers} upload worker(s)")
    for i, f in enumerate(config.folders):
        traits = [f.model, "polling" if f.polling else "inotify"]
        traits += ["recursive"] * f.recursive + ["audio required"] * f.require_audio
        print(f"  folders[{i}]: {f.path} -> index {f.index_id} ({', '.join(traits)})")
        print(f"    done: {f.done_dir}  failed: {f.failed_dir}")
    return EXIT_OK


def _key_status(config: Config) -> str:
    try:
        return f"found ({resolve_api_key(config.api.key_file).source})"
    except ConfigError as exc:
        # Only a warning here: under systemd the credential exists only inside the service.
        return f"NOT FOUND here ({exc.errors[0].split(': ', 1)[1]})"


def cmd_probe(args: argparse.Namespace) -> int:
    from .validate import check_file

    try:
        report = check_file(args.file, limits_for(args.model), require_audio=args.require_audio)
    except FileNotFoundError:
        print(f"watcherd: {args.file}: no such file", file=sys.stderr)
        return EXIT_FAIL
    if args.json:
        print(json.dumps({"model": args.model, **report.as_dict()}, indent=2))
    else:
        print(f"{args.file}  (model {args.model})")
        if report.facts:
            for key, value in report.facts.as_dict().items():
                print(f"  {key:<18} {value}")
        print()
        for v in report.verdicts:
            print(f"  {v.status.upper():<5} {v.rule:<11} {v.measured:<28} expected {v.expected}")
            if v.reason:
                print(f"        {v.reason}")
        print(f"\n{'ACCEPTED' if report.accepted else 'REJECTED'}")
    return EXIT_OK if report.accepted else EXIT_FAIL


STATUS_FIELDS = ("path", "state", "task_id", "video_id", "reason", "remote_status", "attempts",
                 "dest_path", "updated_at")


def cmd_status(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if not Path(config.state_db).exists():
        print(f"watcherd: no state database at {config.state_db} (has the daemon run yet?)",
              file=sys.stderr)
        return EXIT_FAIL
    store = Store(config.state_db, readonly=True)
    records = store.all()
    store.close()
    for record in reversed(records):
        print(json.dumps(_status_row(record)) if args.json else _status_line(record))
    return EXIT_OK


def _status_row(record: FileRecord) -> dict:
    row = {name: getattr(record, name) for name in STATUS_FIELDS}
    row["updated_at"] = datetime.fromtimestamp(record.updated_at).astimezone().isoformat(
        timespec="seconds")
    return row


def _status_line(record: FileRecord) -> str:
    extra = record.task_id or ""
    if record.reason:
        extra = f"{extra} {record.reason}".strip()
    return f"{record.state:<11} {record.path}  {extra}".rstrip()
