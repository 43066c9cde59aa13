"""The API's rate-limit windows, per endpoint, as its ``X-Ratelimit-*`` headers tell them."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

UPLOAD_ENDPOINT = "POST /tasks"


def endpoint_key(method: str, path: str) -> str:
    """Rate limits are per endpoint: ``POST /tasks`` and ``GET /tasks/…`` are counted apart."""
    first = path.lstrip("/").split("/", 1)[0].split("?", 1)[0]
    return f"{method.upper()} /{first}"


class RateWindow:
    """Endpoints the API said have no requests left (``X-Ratelimit-Remaining: 0``).

    Waiting for the reset costs nothing; sending a request to learn the same
    thing costs one from the next window.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._until: dict[str, float] = {}

    def close(self, key: str, seconds: float) -> None:
        with self._lock:
            self._until[key] = max(self._until.get(key, 0.0), self._clock() + seconds)

    def closed_for(self, key: str) -> float:
        """Seconds until ``key`` may be asked again (0 when open)."""
        with self._lock:
            return max(0.0, self._until.get(key, 0.0) - self._clock())
