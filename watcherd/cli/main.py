"""The ``watcherd`` command line: every command registered once, run by its own module.

A command's module (``watcherd.cli.<name>``) is imported only when that
command runs, so ``--help`` and ``--version`` load neither rich, PyAV nor the
HTTP client. Exit codes: ``watcherd.exitcodes``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

from watcherd import __version__
from watcherd.config import DEFAULT_CONFIG_PATH
from watcherd.errors import ConfigError
from watcherd.exitcodes import EXIT_CONFIG
from watcherd.media.limits import MODEL_LIMITS
from watcherd.state.states import STATE_NAMES

EPILOG = """examples:
  watcherd run --config /etc/watcherd/config.yaml
  watcherd status                         # what is it doing?
  watcherd explain /srv/drop/inbox/interview.mp4
  watcherd retry --failed --dry-run
  watcherd probe interview.mp4 --model pegasus

exit codes: 0 ok; 1 rejected, failed or not found; 2 usage; 78 invalid configuration
colour only on a terminal, never with NO_COLOR; --json output is documented in the README
"""

Arguments = Callable[[argparse.ArgumentParser], None]


@dataclass(frozen=True)
class Command:
    """One ``watcherd COMMAND``: its help, its own arguments, and the function that runs it."""

    name: str
    help: str
    handler: str  # "module:function" taking the parsed arguments, returning the exit code
    examples: str  # ends the command's --help (with what its exit codes mean)
    arguments: Arguments | None = None
    config: bool = True  # -c/--config
    json: bool = False  # --json


def _check_config_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--online", action="store_true",
                     help="also check the key and every index with Twelve Labs (the same "
                          "requests as run's start-up checks)")


def _folder_argument(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--folder", metavar="PATH", help="only this configured folder")


def _list_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--state", choices=sorted(STATE_NAMES))
    _folder_argument(sub)


def _explain_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("path", help="a file in a drop folder, or where it was moved to")


def _retry_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("target", nargs="?", metavar="PATH|TASK_ID",
                     help="a failed file (in failed/ or by its inbox path) or its task id")
    sub.add_argument("--failed", action="store_true", help="every failed file")
    sub.add_argument("--folder", metavar="PATH", help="with --failed: only this folder")
    sub.add_argument("--dry-run", action="store_true", help="show what would move")


def _scan_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--dry-run", action="store_true", help="required: only look")


def _probe_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("file")
    sub.add_argument("--model", choices=sorted(MODEL_LIMITS), default="marengo")
    sub.add_argument("--require-audio", action="store_true")


COMMANDS = (
    Command("run", "run the daemon in the foreground until SIGTERM/SIGINT",
            "watcherd.cli.run:cmd_run",
            "watcherd run -c /etc/watcherd/config.yaml\n"
            "signals: SIGTERM/SIGINT stop, SIGHUP reloads the config, SIGUSR1 dumps stacks\n"
            "exit: 0 stopped, 1 another daemon holds the database or a folder, 78 invalid "
            "config/folder/key source/index (a refused key pauses uploads instead)"),
    Command("check-config", "validate the config, the folders and the key source the way run "
            "does at start, and print a summary",
            "watcherd.cli.check_config:cmd_check_config",
            "watcherd check-config -c ./config.yaml\n"
            "watcherd check-config --online    # also ask Twelve Labs about the key and every "
            "index\n"
            "exit: 0 valid, 1 --online could not reach the API, 78 invalid (config, folder, "
            "key or index)",
            _check_config_arguments),
    Command("status", "what the daemon is doing: folders, active files, recent results, "
            "pauses", "watcherd.cli.status:cmd_status",
            "watcherd status\nwatcherd status --folder /srv/drop/inbox\n"
            "watcherd status --json | jq '.active[] | select(.state == \"uploading\")'",
            _folder_argument, json=True),
    Command("list", "one line per tracked file, newest first", "watcherd.cli.listing:cmd_list",
            "watcherd list --state failed\n"
            "watcherd list --json | jq -r 'select(.task_id) | .path'",
            _list_arguments, json=True),
    Command("explain", "why a file is where it is, with its whole history",
            "watcherd.cli.explain:cmd_explain",
            "watcherd explain /srv/drop/inbox/interview.mp4\n"
            "watcherd explain /srv/drop/failed/short.mp4 --json | jq .history",
            _explain_arguments, json=True),
    Command("retry", "move failed files back into their inbox to be uploaded again",
            "watcherd.cli.retry:cmd_retry",
            "watcherd retry /srv/drop/failed/clip.mp4\nwatcherd retry 6650a8f2e5b8c1a0\n"
            "watcherd retry --failed --folder /srv/drop/inbox --dry-run\n"
            "exit: 0 every match moved (or would be), 1 nothing matched or some were skipped",
            _retry_arguments, json=True),
    Command("scan", "classify every file in every folder without changing anything",
            "watcherd.cli.scan:cmd_scan",
            "watcherd scan --dry-run\n"
            "watcherd scan --dry-run --json | jq -r '.[] | select(.verdict == \"invalid\") "
            "| .path'",
            _scan_arguments, json=True),
    Command("probe", "a file's media facts and each rule's verdict",
            "watcherd.cli.probe:cmd_probe",
            "watcherd probe interview.mp4\nwatcherd probe clip.mov --model pegasus "
            "--require-audio --json\nexit: 0 would be accepted, 1 would be rejected",
            _probe_arguments, config=False, json=True),
)


def build_parser(commands: tuple[Command, ...] = COMMANDS) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="watcherd", description="Watch drop folders and ingest videos into Twelve Labs.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"watcherd {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in commands:
        sub = subparsers.add_parser(
            command.name, help=command.help, description=command.help,
            epilog="examples:\n  " + command.examples.replace("\n", "\n  "),
            formatter_class=argparse.RawDescriptionHelpFormatter)
        if command.config:
            sub.add_argument("-c", "--config", default=os.environ.get(
                "WATCHERD_CONFIG", DEFAULT_CONFIG_PATH),
                help="config file (default: $WATCHERD_CONFIG or %(default)s)")
        if command.arguments is not None:
            command.arguments(sub)
        if command.json:
            sub.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = next(c for c in COMMANDS if c.name == args.command)
    module, _, function = command.handler.partition(":")
    handler: Callable[[argparse.Namespace], int] = getattr(importlib.import_module(module),
                                                           function)
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
