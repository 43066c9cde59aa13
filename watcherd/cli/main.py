"""The ``watcherd`` command line: parsing, ``run`` and ``check-config``.

The operator commands (status, list, explain, retry, scan, probe) live in
``commands``.

Exit codes: 0 success; 1 the file would be rejected (probe) or an operational
error; 2 bad command line; 78 (EX_CONFIG) invalid configuration, which the
systemd unit marks as not worth restarting.
"""

from __future__ import annotations

import argparse
import faulthandler
import logging
import os
import signal
import sqlite3
import sys

from watcherd import __version__
from watcherd.cli import demo, simulator
from watcherd.cli.commands import cmd_explain, cmd_list, cmd_probe, cmd_retry, cmd_scan, cmd_status
from watcherd.cli.render import terminal_console
from watcherd.config import DEFAULT_CONFIG_PATH, Config, load_config
from watcherd.errors import ConfigError
from watcherd.media.profiles import DEPRECATED_NAMES, NEWEST, PROFILES
from watcherd.service.logs import setup_logging
from watcherd.service.startcheck import check_at_start, check_online
from watcherd.state.instance import AlreadyRunning
from watcherd.state.states import STATE_NAMES

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_CONFIG = 78

EPILOG = """examples:
  watcherd run --config /etc/watcherd/config.yaml
  watcherd status                         # what is it doing?
  watcherd explain /srv/drop/inbox/interview.mp4
  watcherd retry --failed --dry-run
  watcherd probe interview.mp4 --index 6650a8f2e5b8c1a0

exit codes: 0 ok; 1 rejected, failed or not found; 2 usage; 78 invalid configuration
colour only on a terminal, never with NO_COLOR; --json output is documented in the README
"""

# Every command's --help ends with examples (and what its exit codes mean).
EXAMPLES = {
    "run": "watcherd run -c /etc/watcherd/config.yaml\n"
           "signals: SIGTERM/SIGINT stop, SIGHUP reloads the config, SIGUSR1 dumps stacks\n"
           "exit: 0 stopped, 1 another daemon holds the database or a folder, 78 invalid "
           "config/folder/key source/index (a refused key pauses uploads instead)",
    "check-config": "watcherd check-config -c ./config.yaml\n"
                    "watcherd check-config --online    # also ask Twelve Labs about the key "
                    "and every index\n"
                    "exit: 0 valid, 1 --online could not reach the API, 78 invalid (config, "
                    "folder, key or index)",
    "status": "watcherd status\nwatcherd status --folder /srv/drop/inbox\n"
              "watcherd status --json | jq '.active[] | select(.state == \"uploading\")'",
    "list": "watcherd list --state failed\nwatcherd list --json | jq -r 'select(.task_id) | .path'",
    "explain": "watcherd explain /srv/drop/inbox/interview.mp4\n"
               "watcherd explain /srv/drop/failed/short.mp4 --json | jq .history",
    "retry": "watcherd retry /srv/drop/failed/clip.mp4\nwatcherd retry 6650a8f2e5b8c1a0\n"
             "watcherd retry --failed --folder /srv/drop/inbox --dry-run\n"
             "exit: 0 every match moved (or would be), 1 nothing matched or some were skipped",
    "scan": "watcherd scan --dry-run\n"
            "watcherd scan --dry-run --json "
            "| jq -r '.[] | select(.verdict == \"invalid\") | .path'",
    "probe": "watcherd probe interview.mp4              # the newest profile (marengo3.0)\n"
             "watcherd probe clip.mov --index 6650a8f2e5b8c1a0   # that index's models\n"
             "watcherd probe clip.mov --model marengo2.7 --require-audio --json\n"
             "exit: 0 would be accepted, 1 would be rejected (or the index cannot be asked)",
    "simulator": simulator.EXAMPLES,
    "demo": demo.EXAMPLES,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="watcherd", description="Watch drop folders and ingest videos into Twelve Labs.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"watcherd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str, config: bool = True) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text,
                                  epilog="examples:\n  " + EXAMPLES[name].replace("\n", "\n  "),
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        if config:
            sub.add_argument("-c", "--config", default=os.environ.get(
                "WATCHERD_CONFIG", DEFAULT_CONFIG_PATH),
                help="config file (default: $WATCHERD_CONFIG or %(default)s)")
        return sub

    def json_flag(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--json", action="store_true", help="machine-readable output")

    command("run", "run the daemon in the foreground until SIGTERM/SIGINT")
    check = command("check-config", "validate the config, the folders and the key source the "
                    "way run does at start, and print a summary")
    check.add_argument("--online", action="store_true",
                       help="also check the key and every index with Twelve Labs (the same "
                            "requests as run's start-up checks)")
    status = command("status", "what the daemon is doing: folders, active files, recent "
                     "results, pauses")
    status.add_argument("--folder", metavar="PATH", help="only this configured folder")
    json_flag(status)
    listing = command("list", "one line per tracked file, newest first")
    listing.add_argument("--state", choices=sorted(STATE_NAMES))
    listing.add_argument("--folder", metavar="PATH", help="only this configured folder")
    json_flag(listing)
    why = command("explain", "why a file is where it is, with its whole history")
    why.add_argument("path", help="a file in a drop folder, or where it was moved to")
    json_flag(why)
    retry = command("retry", "move failed files back into their inbox to be uploaded again")
    retry.add_argument("target", nargs="?", metavar="PATH|TASK_ID",
                       help="a failed file (in failed/ or by its inbox path) or its task id")
    retry.add_argument("--failed", action="store_true", help="every failed file")
    retry.add_argument("--folder", metavar="PATH", help="with --failed: only this folder")
    retry.add_argument("--dry-run", action="store_true", help="show what would move")
    json_flag(retry)
    scan = command("scan", "classify every file in every folder without changing anything")
    scan.add_argument("--dry-run", action="store_true", help="required: only look")
    json_flag(scan)
    probe = command("probe", "a file's media facts and each rule's verdict against a "
                    "validation profile")
    probe.add_argument("file")
    probe.add_argument("--model", choices=[*PROFILES, *DEPRECATED_NAMES],
                       help=f"pin this profile (default: the newest, {NEWEST})")
    probe.add_argument("--index", metavar="ID", help="use this index's models, asked with the "
                       "configured key (-c); the daemon's cached answer if the API is unreachable")
    probe.add_argument("--require-audio", action="store_true")
    json_flag(probe)
    simulator.add_arguments(command("simulator", simulator.HELP, config=False))
    demo.add_arguments(command("demo", demo.HELP, config=False))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"run": cmd_run, "check-config": cmd_check_config, "probe": cmd_probe,
               "status": cmd_status, "list": cmd_list, "explain": cmd_explain,
               "retry": cmd_retry, "scan": cmd_scan, "simulator": simulator.cmd_simulator,
               "demo": demo.cmd_demo}[args.command]
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
    key = check_at_start(config)  # what check-config refuses too, before any thread starts
    console = terminal_console()
    setup_logging(config.log_level, console=console)
    # A hang is diagnosable: SIGUSR1 (or systemd's watchdog SIGABRT) dumps every
    # thread's stack to stderr, i.e. the journal.
    faulthandler.enable()
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    from watcherd.ingest.progress import TerminalProgress
    from watcherd.service.daemon import Daemon  # imports PyAV and watchdog: only when running

    logger = logging.getLogger(__name__)
    logger.info("watcherd %s: config %s, API %s, key from %s", __version__, config.source,
                config.api.base_url, key.source)
    _warn_outside_state_directory(config, logger)
    for warning in config.warnings:
        logger.warning("%s: %s", config.source, warning)
    try:
        display = TerminalProgress(console) if console else None
        return Daemon(config, display=display).run()
    except AlreadyRunning as exc:
        logger.critical("cannot run: %s", exc)
        return EXIT_FAIL
    except (OSError, sqlite3.Error) as exc:
        logger.critical("cannot run: %s (state_db %s)", exc, config.state_db)
        return EXIT_FAIL


def _warn_outside_state_directory(config: Config, logger: logging.Logger) -> None:
    # The default state_db no longer follows $STATE_DIRECTORY (only the service
    # sees it); a unit with a config elsewhere must name its state_db.
    state_directory = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    if state_directory and not config.state_db.is_relative_to(state_directory):
        logger.warning("state_db %s is outside the unit's StateDirectory %s; if watcherd "
                       "cannot write there, set state_db in %s", config.state_db,
                       state_directory, config.source)


def cmd_check_config(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    key = check_at_start(config)
    online = check_online(config, key) if args.online else None
    if online is not None and online.problems:
        raise ConfigError(online.problems, str(config.source) if config.source else None)
    for warning in config.warnings:
        print(f"watcherd: warning: {warning}", file=sys.stderr)
    print(f"config {config.source}: OK")
    print(f"  api: {config.api.base_url}; key: found ({key.source})")
    print(f"  state_db: {config.state_db}")
    print(f"  settle {config.settle_seconds:g}s, poll {config.poll_interval_seconds:g}s, "
          f"rescan {config.rescan_interval_seconds:g}s, {config.upload_workers} upload worker(s)")
    for i, f in enumerate(config.folders):
        traits = [f"model {f.model}", "polling" if f.polling else "inotify"]
        traits += ["recursive"] * f.recursive + ["audio required"] * f.require_audio
        print(f"  folders[{i}]: {f.path} -> index {f.index_id} ({', '.join(traits)})")
        print(f"    done: {f.done_dir}  failed: {f.failed_dir}")
    if online is None:
        return EXIT_OK
    for index_id, name in online.reachable.items():
        print(f"  online: index {index_id} ({name}) answers to the key from {key.source}")
    for i, f in enumerate(online.config.folders if online.config else ()):
        print(f"  online: folders[{i}] validates with {f.profile.describe()}")
    for index_id, why in online.unchecked.items():
        print(f"watcherd: index {index_id} could not be checked: {why}", file=sys.stderr)
    return EXIT_FAIL if online.unchecked else EXIT_OK
