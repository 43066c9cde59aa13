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
from watcherd.media.profiles import DEPRECATED_NAMES, NEWEST, PROFILES
from watcherd.state.states import STATE_NAMES
from watcherd.units import since_time

EPILOG = """examples:
  watcherd run --config /etc/watcherd/config.yaml
  watcherd status                         # what is it doing?
  watcherd explain /srv/drop/inbox/interview.mp4
  watcherd retry --failed --dry-run
  watcherd probe interview.mp4 --index 6650a8f2e5b8c1a0

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


def _since(text: str) -> float:
    try:
        return since_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _list_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--state", choices=sorted(STATE_NAMES))
    _folder_argument(sub)
    sub.add_argument("--since", type=_since, metavar="AGE|DATE",
                     help="only files changed since then: 12h, 7d, 2026-11-30, "
                          "2026-11-30T08:00")
    sub.add_argument("--limit", type=int, metavar="N",
                     help="at most N files, newest first; 0 for all (default: 1000 for the "
                          "table on a terminal, all otherwise)")


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
    sub.add_argument("--model", choices=[*PROFILES, *DEPRECATED_NAMES],
                     help=f"pin this profile (default: the newest, {NEWEST})")
    sub.add_argument("--index", metavar="ID", help="use this index's models, asked with the "
                     "configured key (-c); the daemon's cached answer if the API is unreachable")
    sub.add_argument("--require-audio", action="store_true")


# The simulator and the demo are registered here like every command, so that
# --help and --version import neither their modules nor the simulator.
SIMULATOR_SWITCHES = (
    "ANSWER is an HTTP status or an action: reset, reset_midbody, create_then_reset,\n"
    "late, early, trickle, slow_read. METHOD may be *; PATH is a prefix under /v1.3\n"
    "(/tasks, /indexes). Options are KEY=VALUE words: status=N, body=TEXT (a JSON\n"
    "object is sent as JSON), header=NAME:VALUE (repeatable); for --inject times=N\n"
    "(default 1) and delay=S; for --random seed=N and after_bytes=N (reset_midbody)."
)


def _simulator_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--host", default="127.0.0.1",
                     help="address to listen on (default %(default)s; only loopback unless "
                          "--allow-remote)")
    sub.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    sub.add_argument("--allow-remote", action="store_true",
                     help="let --host be a non-loopback address (plain HTTP: anyone who can "
                          "reach it sees the key and can upload)")
    sub.add_argument("--api-key", default="tlk_test_key",
                     help="the only key accepted (default %(default)s)")
    sub.add_argument("--index", action="append", metavar="ID",
                     help="an index that exists (repeatable; default idx_test)")
    sub.add_argument("--api-version", default="v1.3", choices=("v1.3", "v1.2"))
    sub.add_argument("--models", action="append", default=[], metavar="ID=NAME[,NAME]",
                     help="the models GET /indexes/ID lists (repeatable; default marengo3.0)")
    sub.add_argument("--store-dir", metavar="DIR",
                     help="keep each uploaded file there as <task_id>.bin")
    faults = sub.add_argument_group("fault switches", SIMULATOR_SWITCHES)
    faults.add_argument("--inject", action="append", default=[],
                        metavar="'METHOD PATH ANSWER [KEY=VALUE]...'",
                        help="the next N matching requests get ANSWER instead (delay: wait "
                             "first; late answers normally after delay; trickle: one byte per "
                             "delay s; slow_read: 1 MiB per delay s)")
    faults.add_argument("--random", action="append", default=[],
                        metavar="'METHOD PATH ANSWER p=P [KEY=VALUE]...'",
                        help="each matching request gets ANSWER with probability P, drawn "
                             "from its own seeded generator (replayable)")
    faults.add_argument("--rate-limit", action="append", default=[],
                        metavar="'METHOD PATH LIMIT/WINDOW'",
                        help="LIMIT requests per WINDOW seconds with X-Ratelimit-* headers; "
                             "beyond that a bare 429")
    faults.add_argument("--fail-filename", action="append", default=[], metavar="NAME",
                        help="indexing of an upload named NAME ends 'failed' (repeatable)")
    faults.add_argument("--ready-after", type=float, metavar="SECONDS",
                        help="from upload to ready (default 0.3; validating, pending and "
                             "indexing keep their share)")
    faults.add_argument("--redirect-to", metavar="URL",
                        help="answer every request with a 302 to URL + its path")
    faults.add_argument("--clock-offset", type=float, default=0.0, metavar="SECONDS",
                        help="the API's clock runs this far ahead of ours (negative: behind)")
    faults.add_argument("--user-metadata-shown", default="list_and_video",
                        choices=("list_and_video", "video", "nowhere"),
                        help="where a video's user_metadata can be read back")
    paths = sub.add_argument_group("upload paths")
    paths.add_argument("--throttle", metavar="RATE",
                       help="read each connection's upload body (POST /tasks, chunk PUTs) at "
                            "most this fast: 20MB (decimal), 5MiB, or bytes per second")
    paths.add_argument("--chunk-size", metavar="SIZE",
                       help="the multipart chunk size the server chooses (default 5MiB; "
                            "larger when a file would need over 10,000 chunks)")
    paths.add_argument("--url-ttl", type=float, metavar="SECONDS",
                       help="presigned chunk URLs expire after this long (default 3600)")
    paths.add_argument("--session-ttl", type=float, metavar="SECONDS",
                       help="upload sessions expire after this long (default 86400)")
    paths.add_argument("--multipart-forbidden", action="store_true",
                       help="answer 403 on every multipart route (an account without "
                            "multipart uploads)")
    paths.add_argument("--tasks-removed", type=int, choices=(404, 410), metavar="404|410",
                       help="POST /tasks answers this: the legacy endpoint removed")


def _webhooks_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--replay", metavar="EVENT_ID",
                     help="send a dead-lettered (or delivered) event again")


def _demo_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--timeout", type=float, default=45.0, metavar="SECONDS",
                     help="give up if both clips are not finished by then (default %(default)s)")
    sub.add_argument("--keep", action="store_true",
                     help="keep the demo folder and print where it is")


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
            "watcherd list --since 7d --limit 50\n"
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
    Command("probe", "a file's media facts and each rule's verdict against a validation "
            "profile", "watcherd.cli.probe:cmd_probe",
            "watcherd probe interview.mp4              # the newest profile (marengo3.0)\n"
            "watcherd probe clip.mov --index 6650a8f2e5b8c1a0   # that index's models\n"
            "watcherd probe clip.mov --model marengo2.7 --require-audio --json\n"
            "exit: 0 would be accepted, 1 would be rejected (or the index cannot be asked)",
            _probe_arguments, json=True),
    Command("webhooks", "webhook events not delivered yet and dead-lettered ones; replay one",
            "watcherd.cli.webhooks:cmd_webhooks",
            "watcherd webhooks\n"
            "watcherd webhooks --json | jq -r '.deliveries[] | select(.status == \"dead\") "
            "| .event_id'\n"
            "watcherd webhooks --replay evt_0123456789abcdef0123456789abcdef\n"
            "exit: 0 listed (or replayed), 1 no database or no such dead/delivered event",
            _webhooks_arguments, json=True),
    Command("simulator", "serve a Twelve Labs API simulator on loopback (no account "
            "needed), with fault switches", "watcherd.cli.simulator:cmd_simulator",
            "watcherd simulator --port 8700 --api-key tlk_staging --index idx_staging\n"
            "watcherd simulator --inject 'POST /tasks 429 times=3' --fail-filename broken.mp4\n"
            "watcherd simulator --random 'POST /tasks reset p=0.2 seed=7' "
            "--rate-limit 'GET /tasks 10/60'\n"
            "prints its base_url first (api.base_url; the key goes in api.key_file or "
            "TWELVELABS_API_KEY)\n"
            "exit: 0 stopped by SIGINT/SIGTERM, 2 bad option or a non-loopback --host without "
            "--allow-remote",
            _simulator_arguments, config=False),
    Command("demo", "a first run with no account: the real daemon against the simulator, "
            "on two clips", "watcherd.cli.demo:cmd_demo",
            "watcherd demo\n"
            "watcherd demo --keep      # leave the demo folder (config, database, log) for a look\n"
            "exit: 0 the valid clip went to done/ and the small one to failed/, 1 anything else, "
            "130 interrupted (cleaned up all the same)",
            _demo_arguments, config=False),
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
