"""The ``webhooks`` list and ``webhook_retry_hours``: where events go, and for how long.

Parsed here (not in ``config.py``) so the config module only gains a field
and a call. The secret itself is never part of the config: it is read from
``secret_file``, else ``$CREDENTIALS_DIRECTORY/<secret_credential>`` (systemd
``LoadCredential=``), at start (``check_at_start``) and again for every
delivery, so a rotated secret applies to the next request. It is never
logged, never put in a repr and never written to the database.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from watcherd.errors import ConfigError
from watcherd.yamlreader import Reader, Section

EVENT_TYPES = ("ready", "failed", "paused", "resumed")
TOP_KEYS = {"webhooks", "webhook_retry_hours"}
WEBHOOK_KEYS = {"url", "secret_file", "secret_credential", "events", "timeout_seconds"}


@dataclass(frozen=True)
class Webhook:
    url: str
    secret_file: Path | None = None
    # Used when secret_file is unset: $CREDENTIALS_DIRECTORY/<this name>.
    secret_credential: str = "webhook-secret"
    events: tuple[str, ...] = EVENT_TYPES
    # Connect and read timeout of one delivery: a slow receiver fails this
    # attempt (retried later) instead of holding its queue.
    timeout_seconds: float = 10.0


@dataclass(frozen=True)
class Webhooks:
    receivers: tuple[Webhook, ...] = ()
    # A delivery failing for this long is dead-lettered (``watcherd webhooks``).
    retry_hours: float = 24.0

    def for_event(self, event_type: str) -> tuple[Webhook, ...]:
        return tuple(hook for hook in self.receivers if event_type in hook.events)


def parse_webhooks(reader: Reader, raw: dict[str, Any],
                   url_problem: Callable[[str], str | None]) -> Webhooks:
    """``webhooks`` and ``webhook_retry_hours`` of the top-level mapping ``raw``.

    ``url_problem``: the API base URL's rule (``config.base_url_problem``), passed
    in because config.py imports this module. The signature proves who sent an
    event, but a file's document must not cross a network in clear text either.
    """
    hours = reader.number(raw, "webhook_retry_hours", "webhook_retry_hours",
                          Webhooks.retry_hours, minimum=0.01)
    value = raw.get("webhooks")
    if value is None:
        return Webhooks(retry_hours=hours)
    if not isinstance(value, list):
        reader.errors.add("webhooks", "must be a list of {url, secret_file, events}")
        return Webhooks(retry_hours=hours)
    hooks = [_parse_webhook(reader, item, f"webhooks[{i}]", url_problem)
             for i, item in enumerate(value)]
    _check_unique_urls(reader, hooks)
    return Webhooks(receivers=tuple(h for h in hooks if h is not None), retry_hours=hours)


def _parse_webhook(reader: Reader, raw: Any, key: str,
                   url_problem: Callable[[str], str | None]) -> Webhook | None:
    if not isinstance(raw, dict):
        reader.errors.add(key, "must be a mapping with at least 'url'")
        return None
    reader.unknown_keys(raw, WEBHOOK_KEYS, key)
    section = Section(reader, raw, Webhook, key)
    url = section.string("url", required=True)
    if url is not None:
        problem = url_problem(url)
        if problem:
            reader.errors.add(f"{key}.url", problem)
    secret_file = section.path("secret_file")
    credential = section.string("secret_credential") or Webhook.secret_credential
    events = _events(reader, raw.get("events"), f"{key}.events")
    timeout = section.number("timeout_seconds", minimum=0.1, maximum=300)
    if url is None:
        return None
    return Webhook(url=url, secret_file=secret_file, secret_credential=credential,
                   events=events, timeout_seconds=timeout)


def _events(reader: Reader, value: Any, key: str) -> tuple[str, ...]:
    if value is None:
        return EVENT_TYPES
    if (not isinstance(value, list) or not value
            or not all(isinstance(v, str) and v in EVENT_TYPES for v in value)):
        reader.errors.add(key, f"must be a non-empty list of {', '.join(EVENT_TYPES)} "
                               f"(got {value!r})")
        return EVENT_TYPES
    return tuple(dict.fromkeys(value))


def _check_unique_urls(reader: Reader, hooks: list[Webhook | None]) -> None:
    """Deliveries are kept per receiver URL: two entries with one URL would share them."""
    seen: dict[str, int] = {}
    for i, hook in enumerate(hooks):
        if hook is None:
            continue
        if hook.url in seen:
            reader.errors.add(f"webhooks[{i}].url", f"same URL as webhooks[{seen[hook.url]}]")
        seen.setdefault(hook.url, i)


def read_secret(hook: Webhook, key: str, env: dict[str, str] | None = None) -> bytes:
    """The signing secret of ``hook`` (config key ``key``); ConfigError if unreadable."""
    env = dict(os.environ) if env is None else env
    if hook.secret_file is not None:
        path, where = hook.secret_file, f"{key}.secret_file"
    elif env.get("CREDENTIALS_DIRECTORY"):
        path = Path(env["CREDENTIALS_DIRECTORY"]) / hook.secret_credential
        where = f"{key}.secret_credential"
    else:
        raise ConfigError([f"{key}.secret_file: required (or pass the credential "
                           f"'{hook.secret_credential}' with LoadCredential=)"])
    try:
        secret = path.read_bytes().strip()
    except OSError as exc:
        raise ConfigError([f"{where}: cannot read {path}: {exc.strerror or exc}"]) from None
    if not secret:
        raise ConfigError([f"{where}: {path} is empty"])
    return secret


def secret_problems(webhooks: Webhooks, env: dict[str, str] | None = None) -> list[str]:
    """Every receiver whose secret cannot be read now (``run`` and ``check-config``)."""
    problems = []
    for i, hook in enumerate(webhooks.receivers):
        try:
            read_secret(hook, f"webhooks[{i}]", env)
        except ConfigError as exc:
            problems += exc.errors
    return problems
