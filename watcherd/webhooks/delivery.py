"""Deliver the outbox: signed POSTs, retried with backoff, dead-lettered after the window.

One ``webhooks`` service thread reads the outbox and never waits on a
receiver: each POST runs on a short-lived thread of its own, one at a time
per receiver, bounded by that receiver's ``timeout_seconds``. So a slow or
dead receiver holds back only its own queue, never another receiver's, and
never ingest (the pipeline only ever writes outbox rows).

A failed attempt (no answer, or any status but 2xx) is retried after
``backoff.retry_delay``: the receiver's ``Retry-After`` honoured, otherwise
doubling up to ``RETRY_CAP_SECONDS``. A receiver that is down (no answer,
429 or 5xx) is held as a whole for that delay rather than tried once per
event. An event still failing ``webhook_retry_hours`` after it was made (or
replayed) is dead-lettered: ``watcherd status`` counts it, ``watcherd
webhooks`` lists it and ``watcherd webhooks --replay ID`` sends it again.

The signature is Twelve Labs' scheme under our own header:
``Watcherd-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, t + "." + body)>``,
made at each attempt (a fresh ``t``) over the body exactly as stored.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import requests

from watcherd import __version__
from watcherd.backoff import retry_delay
from watcherd.config import Config
from watcherd.errors import ConfigError
from watcherd.state.outbox import Delivery, Outbox
from watcherd.state.store import Store
from watcherd.threads import ServiceThread
from watcherd.twelvelabs.client import retry_after_seconds
from watcherd.webhookconfig import Webhook, read_secret

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "Watcherd-Signature"
RETRY_CAP_SECONDS = 600.0  # without a Retry-After, a failing receiver is tried every 10 min
IDLE_SECONDS = 0.5         # how often the outbox is read when nothing is in flight
UNROUTED_CHECK_SECONDS = 60.0


def signature(secret: bytes, body: bytes, t: int) -> str:
    """The ``Watcherd-Signature`` value for ``body`` sent at unix time ``t``."""
    mac = hmac.new(secret, str(t).encode() + b"." + body, hashlib.sha256)
    return f"t={t},v1={mac.hexdigest()}"


@dataclass(frozen=True)
class Outcome:
    status: int | None  # None: no answer (refused, timed out, reset)
    error: str | None
    retry_after: float | None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def receiver_down(self) -> bool:
        """Not this event's fault: hold every event for this receiver."""
        return self.status is None or self.status == 429 or self.status >= 500


class Attempt:
    """One POST on a thread of its own, so the sender's loop never blocks on a receiver."""

    def __init__(self, delivery: Delivery, hook: Webhook, secret: bytes, t: int,
                 done: threading.Event) -> None:
        self.delivery = delivery
        self.hook = hook
        self.outcome: Outcome | None = None
        self._done = done
        body = delivery.body.encode()
        self._thread = threading.Thread(target=self._post, args=(body, signature(secret, body, t)),
                                        name=f"webhook-post-{delivery.seq}", daemon=True)
        self._thread.start()

    def finished(self) -> bool:
        return self.outcome is not None

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _post(self, body: bytes, signed: str) -> None:
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: signed,
                   "User-Agent": f"watcherd/{__version__}",
                   "Watcherd-Event-Id": self.delivery.event_id}
        timeout = self.hook.timeout_seconds
        try:
            response = requests.post(self.hook.url, data=body, headers=headers,
                                     timeout=(timeout, timeout), allow_redirects=False)
            response.close()
            error = None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"
            self.outcome = Outcome(response.status_code, error, retry_after_seconds(response))
        except requests.RequestException as exc:
            self.outcome = Outcome(None, f"{type(exc).__name__}: {exc}", None)
        except Exception as exc:  # noqa: BLE001 (any failure is this attempt's, told via outcome)
            self.outcome = Outcome(None, f"{type(exc).__name__}: {exc}", None)
        finally:
            self._done.set()


def new_totals() -> dict[str, int]:
    """Attempts that were delivered, failed (each failed attempt) and dead-lettered."""
    return {"delivered": 0, "failed": 0, "dead": 0}


class WebhookSender(ServiceThread):
    """The ``webhooks`` thread. ``totals`` (pass the daemon's, so the counts outlive a
    restarted thread) and ``Outbox.depth`` are what the metrics export."""

    def __init__(self, *, config: Config, store: Store, clock: Callable[[], float] = time.time,
                 rng: Callable[[], float] = random.random,
                 env: dict[str, str] | None = None,
                 totals: dict[str, int] | None = None) -> None:
        super().__init__("webhooks")
        self.config = config
        self.outbox = Outbox(store)
        self.clock = clock  # wall clock: retry windows outlive restarts
        self.rng = rng
        self.env = env
        self.totals = new_totals() if totals is None else totals
        self._inflight: dict[str, Attempt] = {}
        self._held_until: dict[str, float] = {}
        self._wake = threading.Event()
        self._next_unrouted_check = 0.0

    def step(self) -> None:
        for i, hook in enumerate(self.config.webhooks.receivers):
            self._tend(i, hook)
        if time.monotonic() >= self._next_unrouted_check:
            self._next_unrouted_check = time.monotonic() + UNROUTED_CHECK_SECONDS
            self._dead_letter_unrouted()
        self._wake.wait(IDLE_SECONDS)
        self._wake.clear()

    def _dead_letter_unrouted(self) -> None:
        """A receiver removed from the config: its events are dead once their window is over
        (put it back and replay them, or leave them)."""
        window = self.config.webhooks.retry_hours * 3600
        urls = tuple(hook.url for hook in self.config.webhooks.receivers)
        dead = self.outbox.dead_letter_unrouted(urls, self.clock() - window)
        if dead:
            self.totals["dead"] += dead
            logger.error("%d webhook event(s) dead-lettered: their receiver is no longer in "
                         "the config (see watcherd webhooks)", dead)

    def teardown(self) -> None:
        # An attempt still running is bounded by its timeout and records
        # nothing: its row stays pending and is sent again after the restart.
        for attempt in self._inflight.values():
            attempt.join(0.1)

    def _tend(self, i: int, hook: Webhook) -> None:
        attempt = self._inflight.get(hook.url)
        if attempt is not None:
            if not attempt.finished():
                return
            del self._inflight[hook.url]
            self._record(attempt)
        now = self.clock()
        if self._held_until.get(hook.url, 0.0) > now:
            return
        delivery = self.outbox.next_due(hook.url, now)
        if delivery is None:
            return
        try:
            secret = read_secret(hook, f"webhooks[{i}]", self.env)
        except ConfigError as exc:  # says which file, never the secret
            self._failed(delivery, Outcome(None, "; ".join(exc.errors), None))
            return
        self._inflight[hook.url] = Attempt(delivery, hook, secret, int(now), self._wake)

    def _record(self, attempt: Attempt) -> None:
        outcome, delivery = attempt.outcome, attempt.delivery
        assert outcome is not None
        if outcome.ok:
            self.outbox.delivered(delivery.seq)
            self.totals["delivered"] += 1
            self._held_until.pop(delivery.receiver, None)
            logger.debug("webhook %s %s delivered to %s", delivery.event_type,
                         delivery.event_id, delivery.receiver)
            return
        self._failed(delivery, outcome)

    def _failed(self, delivery: Delivery, outcome: Outcome) -> None:
        now = self.clock()
        attempts = delivery.attempts + 1
        deadline = delivery.window_start + self.config.webhooks.retry_hours * 3600
        self.totals["failed"] += 1
        error = outcome.error or "failed"
        if now >= deadline:
            self.outbox.failed(delivery.seq, error, None)
            self.totals["dead"] += 1
            logger.error("webhook %s %s to %s dead-lettered after %d attempts over %.1f h "
                         "(last: %s). Replay it with: watcherd webhooks --replay %s",
                         delivery.event_type, delivery.event_id, delivery.receiver, attempts,
                         self.config.webhooks.retry_hours, error, delivery.event_id)
            return
        delay = retry_delay(outcome.retry_after, attempts, self.rng, RETRY_CAP_SECONDS)
        next_at = min(now + delay, deadline)
        self.outbox.failed(delivery.seq, error, next_at)
        if outcome.receiver_down:
            self._held_until[delivery.receiver] = next_at
        logger.warning("webhook %s %s to %s failed (attempt %d: %s); retrying in %.0fs",
                       delivery.event_type, delivery.event_id, delivery.receiver, attempts,
                       error, next_at - now)
