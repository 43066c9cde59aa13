"""``watcherd simulator``: serve the Twelve Labs API simulator for a staging set-up or CI.

It prints its ``base_url`` as the first line on stdout (what goes into ``api.base_url``)
and serves until SIGINT/SIGTERM. The simulator package is imported only when this
command runs: the daemon's own commands never load it.
"""

from __future__ import annotations

import argparse
import ipaddress
import signal
import socket
import sys
import threading

HELP = "serve a Twelve Labs API simulator on loopback (no account needed), with fault switches"
EXAMPLES = (
    "watcherd simulator --port 8700 --api-key tlk_staging --index idx_staging\n"
    "watcherd simulator --inject 'POST /tasks 429 times=3' --fail-filename broken.mp4\n"
    "watcherd simulator --random 'POST /tasks reset p=0.2 seed=7' --rate-limit 'GET /tasks 10/60'\n"
    "prints its base_url first (api.base_url; the key goes in api.key_file or "
    "TWELVELABS_API_KEY)\n"
    "exit: 0 stopped by SIGINT/SIGTERM, 2 bad option or a non-loopback --host without "
    "--allow-remote"
)
SWITCHES = (
    "ANSWER is an HTTP status or an action: reset, reset_midbody, create_then_reset,\n"
    "late, early, trickle, slow_read. METHOD may be *; PATH is a prefix under /v1.3\n"
    "(/tasks, /indexes). Options are KEY=VALUE words: status=N, body=TEXT (a JSON\n"
    "object is sent as JSON), header=NAME:VALUE (repeatable); for --inject times=N\n"
    "(default 1) and delay=S; for --random seed=N and after_bytes=N (reset_midbody)."
)


def add_arguments(sub: argparse.ArgumentParser) -> None:
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
    faults = sub.add_argument_group("fault switches", SWITCHES)
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


def cmd_simulator(args: argparse.Namespace) -> int:
    from watcherd.simulator import FakeTwelveLabs
    from watcherd.simulator.switches import SwitchError, Switches, apply

    refused = _remote_refused(args.host, args.allow_remote)
    if refused:
        print(f"watcherd simulator: {refused}", file=sys.stderr)
        return 2
    fake = FakeTwelveLabs(api_key=args.api_key, indexes=args.index or ["idx_test"],
                          api_version=args.api_version, store_dir=args.store_dir,
                          index_models=_index_models(args.models),
                          host=args.host, port=args.port)
    try:
        active = apply(fake, Switches(
            inject=args.inject, random=args.random, rate_limit=args.rate_limit,
            fail_filename=args.fail_filename, ready_after=args.ready_after,
            redirect_to=args.redirect_to, clock_offset=args.clock_offset,
            user_metadata_shown=args.user_metadata_shown))
    except (SwitchError, ValueError) as exc:
        print(f"watcherd simulator: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with fake:
        print(fake.base_url, flush=True)
        print(f"simulator: key {args.api_key!r}, indexes {', '.join(fake.indexes)}; "
              f"faults: {'; '.join(active) or 'none'}; SIGINT/SIGTERM stops it",
              file=sys.stderr, flush=True)
        while not stop.wait(0.2):
            pass
    return 0


def _remote_refused(host: str, allowed: bool) -> str | None:
    """Why ``host`` is refused (it is not loopback and --allow-remote is absent), or None."""
    try:
        addresses = {str(info[4][0]) for info in socket.getaddrinfo(host, None)}
    except OSError as exc:
        return f"--host {host}: {exc}"
    remote = sorted(a for a in addresses if not ipaddress.ip_address(a.split("%")[0]).is_loopback)
    if not remote:
        return None
    if not allowed:
        return (f"--host {host} is not a loopback address ({', '.join(remote)}): the simulator "
                f"speaks plain HTTP and takes uploads from anyone with the key; add "
                f"--allow-remote if that is what you want")
    print(f"watcherd simulator: warning: listening on {host} ({', '.join(remote)}), "
          f"reachable from other machines over plain HTTP", file=sys.stderr)
    return None


def _index_models(items: list[str]) -> dict[str, list[str]]:
    """``--models ID=A,B`` (repeatable) as the simulator's ``index_models``."""
    return {index_id: names.split(",") for index_id, _, names in
            (item.partition("=") for item in items)}
