"""``watcherd`` with one part sabotaged, for the watchdog tests.

Usage: python sabotaged_daemon.py (hang-upload | kill-poller) run --config FILE

The sabotage is done in the daemon's own process, because that is where
systemd's watchdog has to notice it.
"""

from __future__ import annotations

import sys
import threading

from watcherd import cli
from watcherd.api import TwelveLabsClient
from watcherd.poller import Poller


def hang_forever(*_args: object, **_kwargs: object) -> dict:
    threading.Event().wait()  # like a socket stuck with no timeout
    return {}


def die(_self: Poller) -> None:
    # Not an Exception: ServiceThread's crash guard lets it end the thread.
    raise SystemExit("poller killed by the test")


SABOTAGE = {
    "hang-upload": lambda: setattr(TwelveLabsClient, "create_task", hang_forever),
    "kill-poller": lambda: setattr(Poller, "step", die),
}

if __name__ == "__main__":
    SABOTAGE[sys.argv[1]]()
    sys.exit(cli.main(sys.argv[2:]))
