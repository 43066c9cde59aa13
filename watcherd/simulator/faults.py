"""The fault switches: what the simulator answers instead of the normal answer.

Four kinds, tried in this order for each request under ``/<api_version>``:
a front that redirects everything (``redirect_to``), one-shot rules
(``inject``), fixed-window rate limiters (``rate_limit``) and seeded random
faults (``inject_randomly``). They apply before the key check, like a proxy or
a rate limiter in front of the real API would. The handler carries out the
``Rule`` it is given; ``Trickle`` and ``SlowReader`` shape the bytes of the
slow actions. Apart from the rules, ``throttle_bytes_per_second`` caps how fast
each TCP connection's upload body is read (``Throttle``): a thin link per
connection, which parallel chunk PUTs beat and one ``POST /tasks`` cannot.
"""

from __future__ import annotations

import math
import random
import threading
import time
from dataclasses import dataclass
from typing import Any

# "reset_midbody" reads at least this much before dropping.
MIDBODY_MIN = 64 << 10
ACTIONS = (None, "reset", "reset_midbody", "create_then_reset", "late", "early", "trickle",
           "slow_read", "pass")
Payload = bytes | str | dict[str, Any] | None


@dataclass
class Rule:
    method: str
    prefix: str
    status: int
    body: Payload
    headers: dict[str, str]
    remaining: int
    action: str | None
    delay: float
    after_bytes: int = 0            # "reset_midbody": drop after exactly this much, if set


@dataclass
class Limiter:
    """A fixed-window rate limiter like the documented ``X-Ratelimit-*`` headers describe."""

    method: str
    prefix: str
    limit: int
    window: float
    remaining: int = 0
    reset_at: float = 0.0           # epoch seconds, whole (the header's unit)
    refused: int = 0                # requests sent while the window had nothing left

    def take(self) -> Rule:
        now = time.time()
        if now >= self.reset_at:
            self.remaining, self.reset_at = self.limit, float(math.ceil(now + self.window))
        headers = {"X-Ratelimit-Limit": str(self.limit),
                   "X-Ratelimit-Reset": str(int(self.reset_at))}
        if self.remaining <= 0:
            self.refused += 1
            return Rule(self.method, self.prefix, 429, None,
                        {**headers, "X-Ratelimit-Remaining": "0"}, 1, None, 0.0)
        self.remaining -= 1
        return Rule(self.method, self.prefix, 200, None,
                    {**headers, "X-Ratelimit-Remaining": str(self.remaining)}, 1, "pass", 0.0)


@dataclass
class Chance:
    rule: Rule
    probability: float
    rng: random.Random
    hits: int = 0


def _check_action(action: str | None) -> None:
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {ACTIONS}, not {action!r}")


class FaultSwitches:
    """The switches a test (or ``watcherd simulator``) turns on; the handler asks
    ``_take_rule`` which one, if any, answers a request."""

    def __init__(self) -> None:
        self._faults_lock = threading.Lock()
        self._rules: list[Rule] = []
        self._redirect: tuple[str, int] | None = None
        self._limiters: list[Limiter] = []
        self._chances: list[Chance] = []
        # Upload bodies (POST /tasks, chunk PUTs) are read at most this fast per connection.
        self.throttle_bytes_per_second: float | None = None

    def inject(self, method: str, path_prefix: str, *, status: int = 500,
               body: Payload = None, headers: dict[str, str] | None = None,
               times: int = 1, action: str | None = None, delay: float = 0.0) -> None:
        """The next ``times`` requests matching ``method`` and ``path_prefix`` (relative to
        ``/<api_version>``) get this instead of the normal answer.

        ``action``: None answers ``status``/``body``/``headers`` (dict body -> JSON, None ->
        empty); "reset" reads the body then sends a RST; "reset_midbody" drops after about
        half the body; "create_then_reset" handles the request normally (POST /tasks creates
        the task) and then drops the answer; "late" answers normally after ``delay``;
        "early" answers ``status`` without reading the body and closes the connection.
        ``delay`` sleeps before answering or dropping; "trickle" sends the normal answer one
        byte every ``delay`` seconds; "slow_read" reads the body at 1 MiB per ``delay``
        seconds, then answers normally.
        Rules are tried in the order they were added; the first with uses left wins.
        Injection happens before the key check, like a proxy or rate limiter would.
        """
        _check_action(action)
        with self._faults_lock:
            self._rules.append(Rule(method.upper(), path_prefix, status, body,
                                    dict(headers or {}), times, action, delay))

    def redirect_to(self, target: str | None, status: int = 302) -> None:
        """Act as a front that answers every request with ``status`` pointing at ``target``
        plus the request's path under the API version; None turns the front off."""
        with self._faults_lock:
            self._redirect = None if target is None else (target.rstrip("/"), status)

    def rate_limit(self, method: str, path_prefix: str, *, limit: int,
                   window: float) -> Limiter:
        """Allow ``limit`` requests per ``window`` seconds; every answer carries
        ``X-Ratelimit-Limit/-Remaining/-Reset`` and a request made while nothing remains
        gets a bare 429. ``limiter.refused`` counts those: a client that waits for the
        reset has none."""
        limiter = Limiter(method.upper(), path_prefix, limit, window)
        with self._faults_lock:
            self._limiters.append(limiter)
        return limiter

    def inject_randomly(self, method: str, path_prefix: str, probability: float, *,
                        seed: int, status: int = 500, body: Payload = None,
                        headers: dict[str, str] | None = None, action: str | None = None,
                        after_bytes: int = 0) -> Chance:
        """Each matching request (when no ``inject`` rule or limiter took it) gets this
        fault with ``probability``, drawn from its own ``random.Random(seed)``: the n-th
        matching request is hit or not the same way on every run, whatever the timing.
        ``after_bytes`` with action "reset_midbody" drops after exactly that much body."""
        _check_action(action)
        chance = Chance(Rule(method.upper(), path_prefix, status, body, dict(headers or {}),
                             1, action, 0.0, after_bytes), probability, random.Random(seed))
        with self._faults_lock:
            self._chances.append(chance)
        return chance

    def clear_faults(self) -> None:
        """Forget every pending ``inject`` rule, random fault, rate limiter and redirect."""
        with self._faults_lock:
            for rule in self._rules:
                rule.remaining = 0
            self._chances, self._limiters, self._redirect = [], [], None

    def _take_rule(self, method: str, rel: str | None) -> Rule | None:
        if rel is None:
            return None
        with self._faults_lock:
            if self._redirect is not None:
                return self._redirect_rule(rel)
            for rule in self._rules:
                if rule.remaining > 0 and rule.method in (method, "*") \
                        and rel.startswith(rule.prefix):
                    rule.remaining -= 1
                    return rule
            for limiter in self._limiters:
                if limiter.method == method and rel.startswith(limiter.prefix):
                    return limiter.take()
            for chance in self._chances:
                if chance.rule.method in (method, "*") and rel.startswith(chance.rule.prefix) \
                        and chance.rng.random() < chance.probability:
                    chance.hits += 1
                    return chance.rule
        return None

    def _redirect_rule(self, rel: str) -> Rule:
        assert self._redirect is not None
        target, status = self._redirect
        return Rule("*", "", status, {"code": "moved", "message": "elsewhere"},
                    {"Location": target + rel}, 1, None, 0.0)


class Trickle:
    """A writer that sends one byte, then waits: an answer that never quite stalls."""

    def __init__(self, raw: Any, pause: float, stopping: threading.Event) -> None:
        self.raw, self.pause, self.stopping = raw, pause, stopping

    def write(self, data: bytes) -> int:
        for i in range(len(data)):
            self.raw.write(data[i:i + 1])
            if hasattr(self.raw, "flush"):
                self.raw.flush()
            if self.stopping.wait(self.pause):
                raise ConnectionError("simulator stopping")
        return len(data)

    def flush(self) -> None:
        if hasattr(self.raw, "flush"):
            self.raw.flush()


class Throttle:
    """Reads a request body no faster than ``rate`` bytes per second, measured from the
    first byte: one connection of a link that gives each connection that much."""

    PIECE = 64 << 10

    def __init__(self, raw: Any, rate: float, stopping: threading.Event,
                 clock: Any = time.monotonic) -> None:
        self.raw, self.rate, self.stopping, self.clock = raw, rate, stopping, clock
        self.started: float | None = None
        self.taken = 0

    def read(self, n: int) -> bytes:
        pieces = []
        while n > 0:
            if self.started is None:
                self.started = self.clock()
            piece = self.raw.read(min(n, self.PIECE))
            if not piece:
                break
            pieces.append(piece)
            n -= len(piece)
            self.taken += len(piece)
            ahead = self.started + self.taken / self.rate - self.clock()
            if ahead > 0 and self.stopping.wait(ahead):
                raise ConnectionError("simulator stopping")
        return b"".join(pieces)

    def readline(self, limit: int = -1) -> bytes:
        return self.raw.readline(limit)


class SlowReader:
    """Reads a request body at about 1 MiB per ``per_mib`` seconds (a slow uplink)."""

    def __init__(self, raw: Any, per_mib: float, stopping: threading.Event) -> None:
        self.raw, self.per_mib, self.stopping = raw, per_mib, stopping

    def read(self, n: int) -> bytes:
        pieces = []
        while n > 0:
            piece = self.raw.read(min(n, 64 << 10))
            if not piece:
                break
            pieces.append(piece)
            n -= len(piece)
            if self.stopping.wait(self.per_mib * len(piece) / (1 << 20)):
                raise ConnectionError("simulator stopping")
        return b"".join(pieces)

    def readline(self, limit: int = -1) -> bytes:
        return self.raw.readline(limit)
