"""What the operator commands show of the cluster, from any host.

``status`` lists every host (name, state, heartbeat age, files owned) and the
claims by phase; ``explain`` names the host that owns a file; ``retry`` finds
a failed file another host finalized. Each opens its own short connection;
PostgreSQL away is reported in the output, never a crash of the command.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from watcherd.cluster.claims import Claim, ClaimBook
from watcherd.cluster.settings import read_dsn
from watcherd.cluster.share import read_share_id
from watcherd.config import Config
from watcherd.errors import ConfigError


@contextmanager
def cluster_book(config: Config) -> Iterator[ClaimBook]:
    from watcherd.cluster.connection import open_connection

    settings = config.coordination
    assert settings is not None
    conn = open_connection(read_dsn(settings), settings.schema, settings.lease_seconds)
    try:
        yield ClaimBook(conn, settings.host_name, settings.lease_seconds)
    finally:
        conn.close()


def _unavailable(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"PostgreSQL does not answer: {text[0] if text else type(exc).__name__}"


def cluster_status(config: Config) -> dict[str, Any]:
    """Every host and the cluster's claims by phase, or why they cannot be read."""
    try:
        with cluster_book(config) as book:
            hosts = book.hosts()
            counts = book.phase_counts()
            expired = book.expired_count()
    except ConfigError as exc:
        return {"error": "; ".join(exc.errors)}
    except Exception as exc:  # noqa: BLE001 (any driver error: said in the output)
        return {"error": _unavailable(exc)}
    return {
        "this_host": config.coordination.host_name if config.coordination else None,
        "hosts": [{"name": h["name"], "state": h["state"], "detail": h["detail"],
                   "pid": h["pid"], "heartbeat_age_seconds": round(h["heartbeat_age"], 1),
                   "files_owned": h["files_owned"],
                   "alive": h["state"] != "stopped" and h["heartbeat_age"] <
                   (config.coordination.lease_seconds if config.coordination else 60)}
                  for h in hosts],
        "claims": counts,
        "expired_leases": expired,
    }


def claim_at(config: Config, path: str) -> dict[str, Any] | None:
    """The claim of the file at ``path`` (in the inbox, or where it was moved to)."""
    folder = config.folder_for(path)
    share = read_share_id(folder.path) if folder is not None else None
    try:
        with cluster_book(config) as book:
            found = book.by_dest(path)
            if found is None and folder is not None and share is not None:
                found = book.latest_for(share, os.fsencode(os.path.relpath(path, folder.path)))
    except ConfigError as exc:
        return {"error": "; ".join(exc.errors)}
    except Exception as exc:  # noqa: BLE001 (any driver error: said in the output)
        return {"error": _unavailable(exc)}
    return None if found is None else describe(found)


def describe(claim: Claim) -> dict[str, Any]:
    return {"owner": claim.owner, "phase": claim.phase, "epoch": claim.epoch,
            "takeovers": claim.takeovers, "task_id": claim.task_id,
            "lease_until": claim.lease_until.isoformat(), "dest_path": claim.dest_path,
            "relpath": os.fsdecode(claim.relpath), "outcome": claim.outcome,
            "reason": claim.reason}


def failed_elsewhere(config: Config, target: str | None) -> list[tuple[Claim, Path]]:
    """Failed files (at ``target``, or all) finalized by any host: (claim, inbox path)."""
    shares = {read_share_id(f.path): f.path for f in config.folders}
    with cluster_book(config) as book:
        claims = [c for c in book.failed() if target is None or c.dest_path == target]
    return [(c, shares[c.share] / os.fsdecode(c.relpath)) for c in claims
            if c.share in shares and c.dest_path]
