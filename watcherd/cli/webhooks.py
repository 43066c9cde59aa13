"""``watcherd webhooks``: events not delivered yet, dead-lettered ones, and replaying them.

Listing reads the database read-only. ``--replay ID`` is a write, safe while
the daemon runs: it sets the event's dead (or delivered) deliveries pending
again with a fresh retry window, and the daemon's ``webhooks`` thread sends
them within a second (it reads the outbox, not a copy in memory).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from watcherd.cli.access import operator_config, readonly_store
from watcherd.cli.render import emit, iso, print_json, table
from watcherd.exitcodes import EXIT_FAIL, EXIT_OK
from watcherd.state.outbox import DEAD, PENDING, Delivery, Outbox
from watcherd.state.store import Store

if TYPE_CHECKING:
    from rich.console import Console

LISTED = 200


def cmd_webhooks(args: argparse.Namespace) -> int:
    config = operator_config(args)
    if args.replay is not None:
        return _replay(Path(config.state_db), args.replay, args.json)
    with readonly_store(config) as store:
        if store is None:
            print(f"watcherd: no state database at {config.state_db} (has the daemon run "
                  "yet?)", file=sys.stderr)
            return EXIT_FAIL
        outbox = Outbox(store)
        listing = {"counts": outbox.counts(),
                   "deliveries": [_entry(d) for d in outbox.listed(PENDING, DEAD,
                                                                   limit=LISTED)]}
    emit(listing, args.json, render_webhooks)
    return EXIT_OK


def _replay(state_db: Path, event_id: str, as_json: bool) -> int:
    if not state_db.exists():
        print(f"watcherd: no state database at {state_db}", file=sys.stderr)
        return EXIT_FAIL
    # Writable, but not opened: the schema is the daemon's business.
    store = Store(state_db)
    try:
        replayed = Outbox(store).replay(event_id)
    finally:
        store.close()
    if as_json:
        print_json({"event_id": event_id, "replayed": replayed})
    elif replayed:
        print(f"{event_id}: {replayed} deliver{'y' if replayed == 1 else 'ies'} pending again; "
              "the daemon sends them now")
    else:
        print(f"watcherd: no dead or delivered event {event_id} (see watcherd webhooks)",
              file=sys.stderr)
    return EXIT_OK if replayed else EXIT_FAIL


def _entry(delivery: Delivery) -> dict[str, Any]:
    return {"event_id": delivery.event_id, "type": delivery.event_type,
            "receiver": delivery.receiver, "status": delivery.status,
            "attempts": delivery.attempts, "last_error": delivery.last_error,
            "created_at": iso(delivery.created_at),
            "next_attempt_at": iso(delivery.next_at) if delivery.status == PENDING else None}


def render_webhooks(listing: dict[str, Any], console: Console) -> None:
    counts = listing["counts"]
    console.print(f"{counts.get('pending', 0)} pending, {counts.get('dead', 0)} dead, "
                  f"{counts.get('delivered', 0)} delivered")
    if listing["deliveries"]:
        console.print(table(
            ("status", "event", "type", "receiver", "attempts", "last error", "next"),
            ((d["status"], d["event_id"], d["type"], d["receiver"], d["attempts"],
              d["last_error"] or "", d["next_attempt_at"] or "") for d in listing["deliveries"])))
    if counts.get("dead"):
        console.print("send a dead event again: watcherd webhooks --replay EVENT_ID")
