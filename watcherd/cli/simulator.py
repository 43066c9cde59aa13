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
            user_metadata_shown=args.user_metadata_shown, throttle=args.throttle,
            chunk_size=args.chunk_size, url_ttl=args.url_ttl, session_ttl=args.session_ttl,
            multipart_forbidden=args.multipart_forbidden, tasks_removed=args.tasks_removed))
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
