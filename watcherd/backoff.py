"""How long to wait before retrying: one set of rules for every caller.

- a delay the API gave (``Retry-After``, ``X-Ratelimit-Reset``) is waited out
  exactly, plus a little jitter, and does not grow the backoff exponent;
- without one (5xx, network errors, a bare 429) the wait doubles from 1–2 s up
  to a minute, jittered;
- no retry ever waits less than a floor of about a second, which doubles each
  time the API's own hint was shorter than it (``Retry-After: 0``, a reset time
  already past by our clock): such hints must not turn into a request storm;
- failures that several workers hit at the same moment count as one step, and
  a success clears every delay watcherd chose itself (the API's stand).
- moving a finished file that the disk refuses (full, share away) is retried
  on the same doubling (``doubling``), without jitter: no one else shares it.
"""

from __future__ import annotations

import random
from collections.abc import Callable

BACKOFF_CAP = 60.0   # the longest wait watcherd chooses by itself
FLOOR_BASE = 1.0     # the shortest wait before any retry, before jitter


def doubling(failures: int, first: float, cap: float) -> float:
    """``first`` after the first failure, twice as long after each further one, at most ``cap``."""
    return min(cap, first * 2 ** (failures - 1))


def compute_backoff(failures: int, *, base: float = 2.0, cap: float = BACKOFF_CAP,
                    rng: Callable[[], float] = random.random) -> float:
    """Exponential backoff with jitter: between half and all of ``base·2^(n-1)``, capped."""
    if failures <= 0:
        return 0.0
    return doubling(failures, base, cap) * (0.5 + 0.5 * rng())


def floor_seconds(repeats: int, cap: float = BACKOFF_CAP) -> float:
    """The floor before jitter: about a second, doubling with each repeat."""
    return doubling(max(repeats, 1), FLOOR_BASE, cap)


def retry_floor(repeats: int, rng: Callable[[], float] = random.random,
                cap: float = BACKOFF_CAP) -> float:
    """The floor with ±25 % jitter, so workers and daemons do not retry in lockstep."""
    return min(cap, floor_seconds(repeats, cap) * (0.75 + 0.5 * rng()))


def server_delay(hint: float, rng: Callable[[], float] = random.random) -> float:
    """The API's delay, honoured exactly plus up to 10 % (at most a second) of jitter."""
    return hint + rng() * min(1.0, 0.1 * hint)


def retry_delay(hint: float | None, repeats: int,
                rng: Callable[[], float] = random.random, cap: float = BACKOFF_CAP) -> float:
    """How long to wait before retry number ``repeats`` of one request."""
    if hint is None:
        return max(retry_floor(1, rng, cap), compute_backoff(repeats, cap=cap, rng=rng))
    return max(retry_floor(repeats, rng, cap), server_delay(hint, rng))
