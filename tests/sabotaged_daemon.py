"""``watcherd`` with one part sabotaged, for the watchdog tests.

Usage: python sabotaged_daemon.py SABOTAGE run --config FILE

SABOTAGE is ``hang-upload``, ``kill-poller``, ``flaky:STEP:N`` (the first N
calls of STEP raise IndexError, then it works again), ``die:STEP:N`` (the
same with SystemExit, which ends the thread that runs it) or
``stall:STEP:SECONDS`` (the first call of STEP blocks that long without a
heartbeat, then goes on). STEP is one of validate, hash, upload, poll, finalize.

The sabotage is done in the daemon's own process, because that is where
systemd's watchdog has to notice it.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

import watcherd.cli.main as cli
import watcherd.ingest.prepare as prepare
from watcherd.ingest.finalizer import Finalizer
from watcherd.ingest.poller import Poller
from watcherd.twelvelabs.client import TwelveLabsClient

# Where each step of a file's way can be made to fail.
STEPS: dict[str, tuple[Any, str]] = {
    "validate": (prepare, "check_for_folder"),
    "hash": (prepare, "sha256_file"),
    "upload": (TwelveLabsClient, "create_task"),
    "poll": (TwelveLabsClient, "get_task"),
    "finalize": (Finalizer, "finalize"),
}


def hang_forever(*_args: object, **_kwargs: object) -> dict:
    threading.Event().wait()  # like a socket stuck with no timeout
    return {}


def die(_self: Poller) -> None:
    # Not an Exception: ServiceThread's crash guard lets it end the thread.
    raise SystemExit("poller killed by the test")


def fail_first_calls(step: str, times: int, error: type[BaseException]) -> None:
    """Make the first ``times`` calls of ``step`` raise ``error``; later calls work."""
    owner, name = STEPS[step]
    real = getattr(owner, name)
    left = [times]
    lock = threading.Lock()

    def sabotaged(*args: object, **kwargs: object) -> Any:
        with lock:
            fire = left[0] > 0
            left[0] -= fire
        if fire:
            raise error(f"{step} sabotaged by the test")
        return real(*args, **kwargs)

    setattr(owner, name, sabotaged)


def stall_first_call(step: str, seconds: float) -> None:
    """The first call of ``step`` blocks ``seconds`` (a wedged thread that comes back)."""
    owner, name = STEPS[step]
    real = getattr(owner, name)
    first = threading.Lock()

    def stalled(*args: object, **kwargs: object) -> Any:
        if first.acquire(blocking=False):
            threading.Event().wait(seconds)
        return real(*args, **kwargs)

    setattr(owner, name, stalled)


def sabotage(spec: str) -> None:
    kind, _, rest = spec.partition(":")
    if kind == "stall":
        step, seconds = rest.split(":")
        stall_first_call(step, float(seconds))
    elif kind in ("flaky", "die"):
        step, times = rest.split(":")
        fail_first_calls(step, int(times), IndexError if kind == "flaky" else SystemExit)
    else:
        SABOTAGE[spec]()


SABOTAGE = {
    "hang-upload": lambda: setattr(TwelveLabsClient, "create_task", hang_forever),
    "kill-poller": lambda: setattr(Poller, "step", die),
}

if __name__ == "__main__":
    sabotage(sys.argv[1])
    sys.exit(cli.main(sys.argv[2:]))
