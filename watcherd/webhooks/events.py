"""What a webhook event says: one JSON object, built once and stored as sent.

``{"id", "type", "created_at", ...}`` with ``file`` (the sidecar document,
``ingest.sidecar``: the one format for a finished file) for ``ready`` and
``failed``, or ``pause`` for ``paused`` and ``resumed``. The id is made
here, stored with the body in the outbox, and the same on every retry and
for every receiver, so receivers dedupe on it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from watcherd.state.outbox import OutboxEntry
from watcherd.webhookconfig import Webhooks

READY, FAILED, PAUSED, RESUMED = "ready", "failed", "paused", "resumed"
# Every receiver gets the account's pauses and resumes in the order they happened.
ACCOUNT = "account"


def file_events(webhooks: Webhooks, event_type: str, document: Mapping[str, Any],
                now: float) -> list[OutboxEntry]:
    """``ready`` or ``failed`` with the file's sidecar ``document``, for each subscriber.

    A file's events keep their order per receiver: keyed by the inbox path,
    so a file retried after a failure is told of in order too.
    """
    return _entries(webhooks, event_type, f"file:{document['source_path']}",
                    {"file": document}, now)


def pause_events(webhooks: Webhooks, event_type: str, pause: Mapping[str, Any],
                 now: float) -> list[OutboxEntry]:
    """``paused`` or ``resumed``; ``pause`` says which scope (account or an index), why
    and the fix."""
    scope = ACCOUNT if pause.get("index_id") is None else f"index:{pause['index_id']}"
    return _entries(webhooks, event_type, f"pause:{scope}", {"pause": dict(pause)}, now)


def _entries(webhooks: Webhooks, event_type: str, ordering: str, data: dict[str, Any],
             now: float) -> list[OutboxEntry]:
    receivers = webhooks.for_event(event_type)
    if not receivers:
        return []
    event_id = f"evt_{uuid.uuid4().hex}"
    body = json.dumps({"id": event_id, "type": event_type, "created_at": _iso(now), **data},
                      sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return [OutboxEntry(event_id=event_id, event_type=event_type, receiver=hook.url,
                        ordering=ordering, body=body) for hook in receivers]


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")
